"""The files of an export, as text: a bash launch script per role (one command per replica and
host, picked by ``./ROLE.sh REPLICA HOST``), ``router.sh``, or ``deployment.yaml`` for Dynamo,
and a README that lists every flag with the plan field it came from."""

from __future__ import annotations

import re
import shlex

import yaml

from aicpp_opt.errors import InputError
from aicpp_opt.report.export.build import Export
from aicpp_opt.report.export.dynamo import HF_SECRET
from aicpp_opt.report.export.dynamo import SOURCES as DYNAMO_SOURCES
from aicpp_opt.report.export.inputs import ExportInput
from aicpp_opt.report.export.launch import Command, Flag, RoleLaunch

MEANINGS = {
    "HOST_IP": "the address of the host the command runs on",
    "VLLM_SRC": "a vLLM source checkout",
}


def explain(names: list[str]) -> str:
    """The variables a script needs, with what to set them to."""
    hosts = [n for n in names if n not in MEANINGS]
    parts = [f"{', '.join(hosts)}: address of the first host of each replica"] if hosts else []
    parts += [f"{n}: {MEANINGS[n]}" for n in names if n in MEANINGS]
    return "; ".join(parts)


def shell_word(word: str) -> str:
    """A word for bash: a ``${...}`` expansion in double quotes, anything else quoted."""
    return f'"{word}"' if "${" in word else shlex.quote(word)


def command_text(cmd: Command, indent: str) -> str:
    """``exec [env VAR=...] program``, one variable and one flag per continued line."""
    program = " ".join(shell_word(w) for w in cmd.program)
    lines = ["exec env", *(f"  {e.name}={shell_word(w)}" for e in cmd.env for w in e.words)]
    lines = [*lines, f"  {program}"] if cmd.env else [f"exec {program}"]
    lines += ["  " + " ".join([f.name, *(shell_word(w) for w in f.words)]) for f in cmd.flags]
    return " \\\n".join(indent + line for line in lines)


def required_vars(commands: list[Command] | tuple[Command, ...]) -> list[str]:
    """The variables a command refuses to run without (``${NAME:?...}``), in order of use."""
    found: dict[str, None] = {}
    for cmd in commands:
        for word in (*cmd.program, *(w for f in (*cmd.env, *cmd.flags) for w in f.words)):
            found.update(dict.fromkeys(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", word)))
    return list(found)


def file_name(role_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", role_id) + ".sh"


def _model_default(inp: ExportInput) -> str:
    return f'if [ -z "${{MODEL_PATH:-}}" ]; then MODEL_PATH={shlex.quote(inp.model_path)}; fi'


def _needs(names: list[str]) -> list[str]:
    return [f"# Set first: {explain(names)}."] if names else []


def script(inp: ExportInput, export: Export, launch: RoleLaunch) -> str:
    view, lay = launch.view, launch.view.layout
    name = file_name(view.role.id)
    usage = f"usage: {name} REPLICA HOST"
    header = [
        "#!/usr/bin/env bash",
        f"# {view.role.id} ({view.role.role}) on {export.engine.name}: {view.role.replicas} "
        f"replica(s) x {view.role.gpus_per_replica} GPUs, {lay.nodes} host(s) of "
        f"{lay.gpus_per_node} GPUs per replica.",
        f"# Written by aicpp-opt export from {inp.plan_file.name}; README.md says where every "
        "flag comes from.",
        f"# Run on each host: ./{name} REPLICA HOST  (REPLICA 0..{view.role.replicas - 1}, "
        f"HOST 0..{lay.nodes - 1}).",
        *_needs(required_vars(launch.commands)),
        "set -euo pipefail",
        _model_default(inp),
        f'case "${{1:?{usage}}}/${{2:?{usage}}}" in',
    ]
    body = []
    for cmd in launch.commands:
        body += [f"  {cmd.key})  # {cmd.label}", command_text(cmd, "    "), "    ;;"]
    tail = [
        f'  *) echo "{name}: no replica/host $1/$2 (replicas 0..{view.role.replicas - 1}, '
        f'hosts 0..{lay.nodes - 1})" >&2; exit 2 ;;',
        "esac",
    ]
    return "\n".join(header + body + tail) + "\n"


def router_script(inp: ExportInput, export: Export, cmd: Command) -> str:
    lines = [
        "#!/usr/bin/env bash",
        f"# Router in front of the {export.engine.name} replicas of {inp.plan_file.name}; start "
        "it after them.",
        *_needs(required_vars([cmd])),
        "set -euo pipefail",
        command_text(cmd, ""),
    ]
    return "\n".join(lines) + "\n"


def files(inp: ExportInput, export: Export) -> dict[str, str]:
    """File name -> text of every artefact of an export."""
    out: dict[str, str] = {}
    if export.manifest is not None:
        out["deployment.yaml"] = yaml.safe_dump(export.manifest, sort_keys=False, width=100)
    else:
        router = export.router.command if export.router is not None else None
        taken = {"router.sh"} if router is not None else set()
        for launch in export.launches:
            name = file_name(launch.view.role.id)
            if name in taken or name in out:
                raise InputError(
                    f"{launch.view.field}.id",
                    f"{launch.view.role.id!r} would write {name}, which another script "
                    "writes: rename the role",
                )
            out[name] = script(inp, export, launch)
        if router is not None:
            out["router.sh"] = router_script(inp, export, router)
    out["README.md"] = readme(inp, export, sorted(out))
    return out


def _table(flags: list[Flag] | tuple[Flag, ...]) -> list[str]:
    rows = ["| flag | value | from |", "| --- | --- | --- |"]
    for f in flags:
        value = " ".join(f.words).replace("|", "\\|") or "(switch)"
        rows.append(f"| `{f.name}` | `{value}` | {f.source} |")
    return rows


def _role_section(inp: ExportInput, export: Export, launch: RoleLaunch) -> list[str]:
    view, lay = launch.view, launch.view.layout
    role = view.role
    place = "; ".join(
        f"pool {p.pool} NVLink domain {p.domain}: {p.gpus} GPUs" for p in role.placement
    )
    lines = [
        f"### {role.id} ({view.field}, {role.role})",
        "",
        f"{role.replicas} replica(s) x {role.gpus_per_replica} GPUs; per replica {lay.nodes} "
        f"host(s) of {lay.gpus_per_node} GPUs (hosts of pool {role.pool} have "
        f"{inp.gpus_per_node[role.pool]} GPUs"
        + (f"; {lay.slots} replicas share a host" if lay.slots > 1 else "")
        + f"). Placement: {place}.",
        "",
    ]
    if export.manifest is not None:
        worker = export.engine.dynamo_worker(inp, view)
        lines += [f"Worker (every pod): `{' '.join(worker.program)}` with:", ""]
        lines += [*_table([*worker.env, *worker.flags]), ""]
    else:
        first, args = launch.commands[0], launch.args
        own = [f for f in (*first.env, *first.flags) if f not in (*args.env, *args.flags)]
        lines += [f"Every host of every replica: `{' '.join(first.program)}` with:", ""]
        lines += [*_table([*args.env, *args.flags]), ""]
        lines += [f"Per host (shown for {first.label}; the script sets each host's own):", ""]
        lines += [*_table(own), ""]
    lines += [f"- {note}" for note in launch.args.notes]
    return [*lines, ""]


def _run_steps(inp: ExportInput, export: Export, names: list[str]) -> list[str]:
    if export.manifest is not None:
        return [
            f"Create the secret `{HF_SECRET}` holding HF_TOKEN (or drop `envFromSecret`).",
            "`kubectl apply -f deployment.yaml` with the Dynamo operator installed: it places "
            "each service's pods, adds the multi-host flags, and the frontend serves the "
            "OpenAI API.",
        ]
    commands = [c for launch in export.launches for c in launch.commands]
    if export.router is not None and export.router.command is not None:
        commands.append(export.router.command)
    needed = required_vars(commands)
    steps = [f"Set {explain(needed)}."] if needed else []
    steps += [
        "On each host run `./ROLE.sh REPLICA HOST` as the script's header says (MODEL_PATH "
        f"overrides the checkpoint, default `{inp.model_path}`).",
    ]
    if "router.sh" in names:
        steps.append("Then start `./router.sh` on the router host.")
    return steps


def readme(inp: ExportInput, export: Export, names: list[str]) -> str:
    plan = inp.plan
    framework = plan.framework.value if plan.framework is not None else "not chosen"
    lines = [
        f"# Launch artefacts for {inp.plan_file.name} ({export.fmt})",
        "",
        f"Written by `aicpp-opt export {inp.plan_file.name} --format {export.fmt}`: mode "
        f"{plan.mode}, framework {framework}, instance {inp.instance.name} "
        f"({inp.instance_file}), model {inp.model.name} -> checkpoint `{inp.model_path}` "
        f"({inp.model_path_source}). Engine: {export.engine.name}.",
        "",
        f"Files: {', '.join([*names, 'README.md'])}.",
        "",
    ]
    if export.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in export.warnings), ""]
    steps = _run_steps(inp, export, names)
    lines += ["## How to run", "", *(f"{i}. {s}" for i, s in enumerate(steps, 1)), ""]
    lines += ["## Roles", ""]
    for launch in export.launches:
        lines += _role_section(inp, export, launch)
    if export.router is not None:
        lines += ["## Router", ""]
        if export.router.command is not None:
            cmd = export.router.command
            lines += [f"`{' '.join(cmd.program)}` with:", "", *_table(cmd.flags), ""]
        lines += [*(f"- {n}" for n in export.router.notes), ""]
    sources = export.engine.sources
    if export.manifest is not None:
        sources = DYNAMO_SOURCES + sources
    lines += ["## Sources (argument names as documented there)", "", *(f"- {s}" for s in sources)]
    return "\n".join(lines) + "\n"
