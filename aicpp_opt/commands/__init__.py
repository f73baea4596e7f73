"""The click commands, one module per part they drive; ``aicpp_opt.cli`` loads them lazily.
The top layer: nothing imports it back."""
