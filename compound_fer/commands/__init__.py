"""Sub-commands of the ``compound-fer`` CLI, one module each.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; it imports
heavy libraries inside ``run`` only, so ``compound-fer --help`` stays fast.
"""

#: Modules listed here become sub-commands, in this order.
COMMANDS: tuple[str, ...] = (
    "synth",
    "data_info",
    "demo",
    "run",
    "fewshot",
    "report",
    "evaluate",
    "gradcam",
    "predict",
)
