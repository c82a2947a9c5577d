"""`xlt report`: merge `xlt eval` reports into one side-by-side results table (JSON + markdown)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common


def _codes(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    return [x.strip() for x in spec.split(",") if x.strip()]


def report_cli(
    systems: Annotated[Optional[list[str]], typer.Argument(help="NAME=REPORT.json for each system (the JSON of xlt eval), in table order; NAME=A.json,B.json merges reports that score different languages (one model per language) into one row.", show_default=False)] = None,
    baseline: Annotated[Optional[list[str]], typer.Option("--baseline", help="NAME: the system the others are compared with (deltas, and p-values from reports made with `xlt eval --compare` against its model). Repeat as SYSTEM=BASELINE for a row compared with a baseline of its own, e.g. a second seed's pipeline with the second seed's baseline.", show_default=False)] = None,
    mean: Annotated[Optional[list[str]], typer.Option("--mean", help="NAME=SYSTEM,SYSTEM[,...]: a row that averages systems (e.g. one method's seeds): mean accuracy per language, mean of their deltas; repeatable.", show_default=False)] = None,
    langs: Annotated[Optional[str], typer.Option("--langs", help="Columns: these languages (or P-H pairs), comma-separated, in this order. Default: every language a report scored.")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Source language(s) left out of the non-source average, comma-separated. Default: the baseline's (or first system's) training languages.")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="A heading above the markdown table.")] = None,
    markdown: Annotated[Optional[str], typer.Option("--markdown", help="Write the markdown table here (atomically).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG bar chart here: accuracy per language and the averages, one bar per system, with the 95% bootstrap intervals of reports made with `xlt eval --bootstrap N`.")] = None,
    output: common.Output = None,
    force: common.Force = False,
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Merge eval reports into one table: accuracy per language for each system, the average and
    non-source average, deltas against --baseline, p-values of paired tests, and the seed, steps
    and training time from each model's checkpoint (xlt.json) when it is still there.

    Writes the summary JSON to stdout or -o, the markdown table to --markdown, a bar chart to
    --plot, and the table to stderr, with a verdict per system against the baseline (better, worse
    or no significant difference, by eval's paired test).

    Example: xlt report base=base.json adv=adv.json rs=rs.json --baseline base -o results.json
    --markdown results.md

    Two seeds: xlt report base=b1.json base2=b2.json m=m1.json m2=m2.json --baseline base
    --baseline m2=base2 --mean "m mean=m,m2" (m2 is compared with base2, the mean row averages m and m2)
    """
    with common.stage("report", output=output, outputs=[(markdown, "output"), (plot, "--plot")], force=force,
                      quiet=quiet, verbose=verbose) as run:
        from xlt import log
        from xlt.evaluate.report import build_summary, load_named, parse_baselines, parse_means, plot_summary
        from xlt.io import dump_json

        base, pairs = parse_baselines(baseline or [])
        summary, md = build_summary(load_named(systems or []), baseline=base, pairs=pairs, means=parse_means(mean or []),
                                    langs=_codes(langs), source=_codes(source), title=title)
        text = dump_json(summary, what="the summary")
        if markdown:
            run.text(markdown).write(md)
        if plot:
            plot_summary(summary, run.path(plot, what="--plot"), title=title)
        run.text(output).write(text)
        run.after(lambda: log.block(md))


def register(app: typer.Typer) -> None:
    app.command("report")(report_cli)
