"""``aicpp-opt export``: the launch artefacts a team deploys a plan with. ``inputs`` reads the
plan, its instance and checkpoint; ``launch`` is the framework-neutral part (host layout, the
per-rank numbers, shared refusals); ``sglang``, ``vllm`` and ``dynamo`` hold each framework's
flags, router and manifest, with the documents they were read from; ``build`` assembles an
export and ``render`` writes it (the command is ``aicpp_opt.commands.export``). docs/export.md
maps every plan field to its flag per framework."""
