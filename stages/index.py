r"""Index one raw source: read every file once, validate, hash, group duplicates and patients, split.

    python stages/index.py --source synthetic --index data/index/synthetic \
        --report reports/data/sources/synthetic.json --audit metrics/data/synthetic.json

Reads the folder or zip in params `source.<name>.path`. Writes the index folder (index.csv, source.json),
which the views read, the data report: what `cxr inspect --json` prints for the source, and its shortcut
audit in figures (the metadata-only baseline beside chance).
"""

from __future__ import annotations

from cxr.data.audit import audit_metrics
from cxr.data.index import SourceIndexError, build_index, write_index
from cxr.data.params import IndexParams, SourceParams
from cxr.data.report import summary_lines
from cxr.io.files import write_json
from cxr.params import Classes, Workers, freeze_imports, stage_arguments, stage_params, worker_count


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, source=True, paths={
        "index": "the index folder to write", "report": "the data report to write",
        "audit": "the shortcut audit's flat metrics to write"})
    source_key = f"source.{args.source}"
    params = stage_params({"classes": Classes, "workers": Workers, source_key: SourceParams, "index": IndexParams})

    try:
        built = build_index(args.source, params[source_key], params["index"], params["classes"],
                            worker_count(params["workers"]))
    except SourceIndexError as err:
        raise SystemExit(f"error: {err}") from None
    write_index(args.index, args.report, built)
    write_json(args.audit, audit_metrics(built.report))
    print("\n".join(summary_lines(built.report)))


if __name__ == "__main__":
    freeze_imports()
    main()
