"""The README's tables that the code computes without training, recomputed: the variants table and every
``$ python -m shiftvit.flops ...`` block, compared with what the CLI prints today. Measured numbers (timings,
accuracies) are measurements of one machine and one moment, and are not checked here."""
import re
import shlex

from helpers import ROOT

from shiftvit import flops

README = (ROOT / "README.md").read_text()
# The README writes the CLI's column names for people: same columns, same order.
HEADER = {"variant": "variant", "C": "C", "depths": "depths", "τ": "tau", "γ": "gamma", "input": "input",
          "params (M)": "params(M)", "GMACs": "GMACs"}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def cli(args, capsys) -> str:
    """``python -m shiftvit.flops ARGS``, in-process: the MAC counts are the code's, and one process saves
    importing torch and timm once per command."""
    capsys.readouterr()
    assert flops.main(args) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def markdown_rows(text: str, first_cell: str) -> list:
    """The rows of the markdown table whose header starts with ``first_cell``, header first, rule left out."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]


def test_variants_table_is_what_the_cli_prints(capsys):
    library = section("The model library")
    (command,) = re.findall(r"printed by `python -m shiftvit\.flops ([^`]+)`", library)
    header, *lines, aliases = cli(shlex.split(command), capsys).strip().splitlines()
    assert aliases.startswith("aliases: ")
    target_of = dict(pair.split(" = ") for pair in aliases.removeprefix("aliases: ").split(", "))

    readme_header, *readme_rows = markdown_rows(library, "variant")
    assert [HEADER.get(name, name) for name in readme_header] == header.split()
    rows = []
    for name, *cells in readme_rows:
        # "shiftvit_r2_tiny (= shiftvit_tiny, Shift-T)": the aliases the registry has, and the paper's name
        name, _, note = name.partition(" (= ")
        named = sorted(a for a in note.rstrip(")").split(", ") if a.startswith("shiftvit"))
        assert named == sorted(a for a, t in target_of.items() if t == name), f"aliases of {name}"
        rows.append([name, *cells])
    assert rows == [line.split() for line in lines]


def flops_blocks() -> list:
    """Every fenced block of the README that starts with a ``$ python -m shiftvit.flops`` command: the command's
    arguments and the output shown under it."""
    blocks = re.findall(r"^```\n\$ python -m shiftvit\.flops ([^\n]*)\n(.*?)^```$", README, flags=re.M | re.S)
    return [(shlex.split(args), shown) for args, shown in blocks]


def test_flops_outputs_are_what_the_cli_prints(capsys):
    blocks = flops_blocks()
    # the per-component table (FLOPs per component) and the solved depths (Matched budgets)
    assert len(blocks) >= 2
    for args, shown in blocks:
        assert cli(args, capsys) == shown, f"README block `python -m shiftvit.flops {shlex.join(args)}`"



RESULTS = ROOT / "docs" / "results"
_RESULT_LINK = re.compile(r"docs/results/([\w-]+)/")
_TWO_DECIMALS = re.compile(r"(?<![\d.])\d+\.\d\d(?![\d])")  # 93.52, 2.00: how reports print accuracies and CIs


def _blocks(text: str):
    """Paragraphs and table rows of a section, each with the result folders it names (a table row without a link
    takes those of the paragraph above its table)."""
    above: list = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("|"):
            for row in lines:
                yield row, _RESULT_LINK.findall(row) or above
        else:
            above = _RESULT_LINK.findall(block)
            yield block, above


def _printed(report: str) -> set:
    """The numbers of a report as the README may print them: as written, and rounded to two decimals (a slope
    of +0.798 points is 0.80 there)."""
    numbers = re.findall(r"\d+\.\d+", report)
    return set(numbers) | {f"{float(n):.2f}" for n in numbers if len(n.split(".")[1]) > 2}


def test_results_numbers_are_the_committed_reports():
    """The README's results at CPU scale copy numbers from the committed reports by hand: every number printed
    with two decimals in a paragraph or table row that names a result (an accuracy, a difference, a confidence
    bound, MACs) is in that result's report."""
    reports = {p.parent.name: _printed(p.read_text()) for p in RESULTS.glob("*/report.md")}
    assert len(reports) >= 8, sorted(reports)
    blocks = list(_blocks(section("Results at CPU scale")))
    assert {name for _, folders in blocks for name in folders} == set(reports), \
        "a results folder the README does not name, or a link to none"
    missing = [f"{number} (docs/results/{'|'.join(folders)}): {text.strip()[:80]}"
               for text, folders in blocks for number in _TWO_DECIMALS.findall(text)
               if folders and not any(number in reports[f] for f in folders)]
    assert not missing, "\n".join(missing)


def test_the_permutation_recheck_reads_every_committed_report():
    """The README's note on the permutation fix rests on experiments/recheck_permutation_p.py: it must find every
    committed report's tables and arms, so that "nothing differs" is never a table it did not read. What it may
    find is a value that differs from the one shown."""
    from experiments.recheck_permutation_p import recheck
    from shiftvit.multirun import SWEEP_CSV

    folders = [folder for folder in sorted(RESULTS.glob("*/")) if (folder / SWEEP_CSV).exists()]
    assert len(folders) >= 8
    unread = [line for folder in folders for line in recheck(folder) if ": shown " not in line]
    assert not unread, "\n".join(unread)
