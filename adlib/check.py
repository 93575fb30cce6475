"""Validate a params file: ``python -m adlib.check [params.yaml]``.

Prints ``params.yaml: OK`` and exits 0, or prints the one-line error (naming the file, the
key, the value and what is allowed) to stderr and exits 1, without a traceback.

``python -m adlib.check --table`` prints the Markdown table of every parameter (key,
default, meaning and allowed values) that README.md carries between its
``<!-- params:start -->`` and ``<!-- params:end -->`` markers (a test keeps them equal).
"""

from __future__ import annotations

import sys

from adlib.config import ParamError, describe, load_params

USAGE = "usage: python -m adlib.check [params.yaml] | --table"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def params_table() -> str:
    """Markdown table of every parameter, from adlib/config.py."""
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    rows = ["| key | default | meaning (allowed) |", "|---|---|---|"]
    rows += [f"| `{key}` | `{fmt(default)}` | {doc} |" for key, default, doc in describe()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if args == ["--table"]:
        print(params_table(), end="")
        return 0
    if len(args) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    path = args[0] if args else "params.yaml"
    try:
        load_params(path)
    except ParamError as e:
        print(_one_line(str(e)), file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, not text
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(_one_line(f"{path}: cannot read ({reason})"), file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
