"""The `vplan` command: one click group whose commands load on demand, and one `main()` that turns every error a
user can cause into one line and an exit code (``VPLAN_DEBUG=1`` shows tracebacks).

Commands are named here by module path (the planner's) or registered by other packages through the
``vplan.commands`` entry-point group (the runtime's ``preflight``, ``run``, ``simulate``): the planner never
imports the runtime, and a runtime command that cannot be imported says why instead of disappearing.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata

import click

from vplan.planner.errors import VplanError
from vplan.planner.version import vplan_version

PLANNER_COMMANDS = {
    "check": "vplan.planner.cli.check:check_cmd",
    "plan": "vplan.planner.cli.check:plan_cmd",
    "models": "vplan.planner.cli.check:models_cmd",
    "gpus": "vplan.planner.cli.check:gpus_cmd",
    "render-sbatch": "vplan.planner.cli.slurm:render_sbatch_cmd",
    "cluster": "vplan.planner.cli.slurm:cluster_group",
}
ENTRY_POINT_GROUP = "vplan.commands"
RUNTIME_MODULES = ("torch", "transformers", "accelerate", "safetensors", "psutil", "vllm")


def _registered() -> dict[str, str]:
    out = dict(PLANNER_COMMANDS)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep.value)
    return out


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_registered())

    def get_command(self, ctx, name):
        target = _registered().get(name)
        return _load(target) if target else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(vplan_version(), prog_name="vplan")
def cli():
    """Plan, preflight and run large language models on SLURM GPU clusters.

    Start with `vplan check MODEL` (the compatibility table), then `vplan plan MODEL -o plan.json`,
    `vplan render-sbatch plan.json ...` and, on the node, `vplan run plan.json ...`.
    """


def _missing_runtime(e: ModuleNotFoundError) -> str | None:
    top = (e.name or "").split(".")[0]
    if top in RUNTIME_MODULES:
        extra = "vllm" if top == "vllm" else "runtime"
        return (f"this command needs {top}, which is not installed here: install the runtime with "
                f"`pip install 'vplan[{extra}]'` (on GPU nodes; `vplan check` and `vplan plan` need none of it)")
    return None


def one_line(text: str) -> str:
    """A message as one line: control characters (a newline in a flag value, a path) are shown escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in str(text))


def main(argv=None):
    debug = os.environ.get("VPLAN_DEBUG") == "1"
    if argv is not None and any("\x00" in str(a) for a in argv):  # only in-process callers can pass one
        click.echo("vplan: error: an argument contains a NUL byte; remove it", err=True)
        sys.exit(2)
    try:
        cli.main(args=argv, prog_name="vplan", standalone_mode=False)
    except VplanError as e:
        if debug:
            raise
        click.echo(f"vplan: error: {one_line(e.message)}", err=True)
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line, with where to look
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # click >= 8.2: bare `vplan [group]`
            click.echo(e.ctx.get_help())
            sys.exit(0)
        cmd = e.ctx.command_path if e.ctx else "vplan"
        click.echo(f"vplan: error: {one_line(e.format_message())} (see `{cmd} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"vplan: error: {one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("vplan: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("vplan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `vplan check ... | head`
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # a missing runtime package, else a bug: one line unless debugging
        if debug:
            raise
        hint = _missing_runtime(e) if isinstance(e, ModuleNotFoundError) else None
        if hint:
            click.echo(f"vplan: error: {hint}", err=True)
            sys.exit(2)
        click.echo(f"vplan: internal error: {type(e).__name__}: {one_line(e)} (set VPLAN_DEBUG=1 for the traceback "
                   "and report it)", err=True)
        sys.exit(70)




if __name__ == "__main__":
    main()
