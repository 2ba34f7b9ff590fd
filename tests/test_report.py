"""``neuromask report``: the HTML report of a study, checked in headless Chromium."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.report.study_report import build_report


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run should have installed it")
        pytest.skip("Chromium is not installed on this machine (.ci/run installs it)")
    return path


def browse(chromium, *args, timeout=120):
    # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


@pytest.fixture(scope="module")
def report(finished_study, tiny_cohort):
    code = CliRunner().invoke(
        cli, ["report", str(finished_study["out"]), "--truth", str(tiny_cohort.ground_truth)]
    )
    assert code.exit_code == 0, code.output
    path = finished_study["out"] / "report" / "report.html"
    assert path.is_file() and "report.html" in code.output.replace("\n", "")
    return path


def test_report_holds_every_table_and_figure(report, tiny_cohort):
    text = report.read_text()
    for title in (
        "Settings, seeds and software",
        "CNN: balanced accuracy",
        "Group masks: folds and cohorts",
        "Mask hyperparameters",
        "Session masks: intra- vs inter-subject",
        "Robustness of training",
    ):
        assert title in text, title
    assert "Ground truth: do the group masks find the atrophied regions?" in text
    assert "torch" in text and "study.toml" in text
    # Self-contained: figures are embedded, nothing is fetched from elsewhere.
    assert "http://" not in text and "https://" not in text
    n_images = text.count("data:image/png;base64,")
    assert n_images >= 10
    figures = list((report.parent / "figures").glob("*.png"))
    assert len(figures) == n_images  # every embedded figure is also a PNG file
    for name in (
        "training_curves.png",
        "group_mask_history.png",
        "group_roi_densities.png",
        "adni_folds_roi_similarity.png",
        "training_folds_similarity.png",
        "architecture.png",
    ):
        assert (report.parent / "figures" / name).stat().st_size > 5_000, name
    assert "The CNN&#39;s architecture" in text or "The CNN's architecture" in text
    # The CNN table's numbers are the study's.
    import pandas as pd

    table = pd.read_csv(report.parent.parent / "cnn" / "balanced_accuracy.tsv", sep="\t")
    assert f"{table['test'].iloc[-2]:.3f}" in text


def test_a_study_not_run_is_said_so(finished_study, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(finished_study["out"], partial, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(partial / "session")
    result = build_report(partial)
    text = result.path.read_text()
    assert "The session study was not run" in text
    assert "Not run. `neuromask sanity" in text


def test_figure_2_shows_a_step_2_failure_when_group_qc_ran(finished_study, tiny_cohort, tmp_path):
    import pandas as pd
    from PIL import Image

    from neuromask.jobs.qc import quality_check_folder

    study = tmp_path / "study"
    shutil.copytree(finished_study["out"], study, ignore=shutil.ignore_patterns("report"))
    # the tiny study reads a CAPS folder; give it the QC table a synthetic study has
    quality_check_folder(
        tiny_cohort.caps, tiny_cohort.participants, study / "data" / "adni" / "qc", progress=False
    )
    text = build_report(study).path.read_text()
    assert "step 1 failure" in text and "in the study folder to add it" in text
    two = Image.open(study / "report" / "figures" / "qc_steps.png").size
    qc = pd.read_csv(study / "data" / "adni" / "qc" / "qc.tsv", sep="\t")
    kept = qc[qc["qc_pass"]].iloc[-1]
    (study / "group-qc").mkdir()
    pd.DataFrame(
        [{"participant_id": kept["participant_id"], "session_id": kept["session_id"],
          "loss_contribution": -2.5, "robust_z": 9.0, "flagged": True}]
    ).to_csv(study / "group-qc" / "removed.tsv", sep="\t", index=False)  # fmt: skip
    text = build_report(study).path.read_text()
    assert f"{kept['participant_id']} {kept['session_id']}, from group-qc/removed.tsv" in text
    three = Image.open(study / "report" / "figures" / "qc_steps.png").size
    assert three[1] > 1.3 * two[1]  # a third row


def test_report_errors(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a study folder" in result.output
    assert "Traceback" not in result.output


def test_report_opens_in_headless_chromium(report, chromium, tmp_path):
    url = report.resolve().as_uri()
    dom = browse(chromium, "--dump-dom", url).stdout
    tables = dom.count('<table class="data">')
    assert tables >= 12
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', dom).group(1))
    assert images >= 10 and decoded == images  # every figure decoded by the browser
    shot = report.parent / "screenshot.png"
    browse(chromium, f"--screenshot={shot}", "--window-size=1400,3000", url)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 3000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is None or len(colours) > 50  # not a blank page


def test_reproduction_tables_print_the_studies_own_numbers(finished_study):
    """benchmarks/reproduction_tables.py (the numbers of docs/reproduction.md) reads the
    study's own tables: its accuracy row is the folds' mean and SD."""
    import subprocess
    import sys

    import pandas as pd

    out = finished_study["out"]
    script = Path(__file__).parents[1] / "benchmarks" / "reproduction_tables.py"
    run = subprocess.run(
        [sys.executable, str(script), f"tiny={out}", f"again={out}"],
        capture_output=True,
        text=True,
        check=True,
    )
    table = pd.read_csv(out / "cnn" / "balanced_accuracy.tsv", sep="\t")
    folds = table[~table["split"].astype(str).isin(["mean", "sd"])]["test"].astype(float)
    cell = f"{folds.mean():.3f} ± {folds.std(ddof=1):.3f}"
    assert f"| test BA (folds) | {cell} | {cell} |" in run.stdout
    for heading in ("Intra- vs inter-subject", "Folds vs re-runs", "neighbouring"):
        assert heading in run.stdout


def test_figures_do_not_print_font_fallbacks(tmp_path):
    """Mathtext fonts missing from a bare machine made matplotlib print a fallback line
    per figure (21 in one demo); the figures module keeps it quiet."""
    import subprocess
    import sys

    code = (
        "import neuromask.figures.plotting as p, matplotlib.pyplot as plt\n"
        "fig = plt.figure(); fig.text(0.1, 0.1, r'$\\beta_1$', math_fontfamily='stix')\n"
        f"p.save_figure(fig, {str(tmp_path / 'f.png')!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "findfont" not in out.stderr
    assert (tmp_path / "f.png").is_file()
