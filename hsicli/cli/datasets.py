"""`hsi datasets`: the registry of known benchmark scenes."""

from __future__ import annotations

from hsicli.cli.common import JsonOpt, Log, QuietOpt, VerboseOpt


def datasets(json_out: JsonOpt = False, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """List the known benchmark scenes: shape, classes, auxiliary data, whether they are on disk.

    The table goes to stderr. --json prints one object {"datasets": [...]} on stdout with everything
    the registry holds: class names, ids and colours, water-absorption bands (1-based, and the band
    count they refer to), download addresses, sha256 and the local paths. "local" means found in
    $HSI_DATA_DIR or the download folder of `hsi fetch` (not re-verified here).

    Example: hsi datasets --json | jq '.datasets[].name'
    """
    import json
    from dataclasses import asdict

    from hsicli.data.datasets import data_dir, find_local, list_datasets
    from hsicli.data.fetch import default_dest

    roots = [root for root in (data_dir(), default_dest()) if root is not None]
    rows = [(info, find_local(info, roots, verify=False)) for info in list_datasets()]
    if json_out:
        records = [
            {**asdict(info), "local": {k: str(v) for k, v in local.items()} if local else None}
            for info, local in rows
        ]
        print(json.dumps({"datasets": records}), flush=True)
        return
    if quiet:
        return
    from rich.table import Table

    table = Table(title="Known scenes (hsi fetch NAME)", title_justify="left")
    for column in ("name", "title", "H×W×bands", "classes", "aux", "local"):
        table.add_column(column, justify="right" if column == "classes" else "left", no_wrap=column != "title")
    for info, local in rows:
        table.add_row(
            info.name,
            info.title,
            "×".join(str(n) for n in info.shape),
            str(len(info.class_names)),
            ", ".join(info.aux) or "-",
            "yes" if local else "-",
        )
    Log().console.print(table)
