"""``neuromask demo``: the studies, the report and the closing summary.

The full demo (small preset, 9 to 30 minutes on 2 cores) is measured by hand and in the README;
here it runs on the tiny study, resumed from the finished tiny study so that no job
is repeated."""

import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from neuromask.cli.main import cli
from neuromask.demo import run_demo


@pytest.mark.slow
def test_demo_resumes_a_study_writes_the_report_and_prints_the_summary(
    finished_study, tiny_cohort, tmp_path
):
    out = tmp_path / "demo"
    shutil.copytree(finished_study["out"], out, ignore=shutil.ignore_patterns("report"))
    config = str(finished_study["config"])
    result = CliRunner().invoke(
        cli,
        ["demo", str(out), "--config", config, "--truth", str(tiny_cohort.ground_truth), "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Report:" in text and (out / "report" / "report.html").is_file()
    assert "CNN balanced accuracy, mean ± SD over 2 folds" in text
    for metric in ("validation", "test", "independent"):
        assert metric in text
    assert "Group masks (ADNI-like cohort), densest AAL2 ROIs (* = truly atrophied)" in text
    assert "split 0 (precision@5" in text and "split 1 (precision@5" in text
    assert "Ground truth (atrophied ROIs):" in text
    truth = (tiny_cohort.ground_truth / "atrophy_rois.tsv").read_text()
    assert any(name in text for name in truth.split() if name.endswith(("_L", "_R")))

    summary = run_demo(out, config=config, truth=tiny_cohort.ground_truth, progress=False)
    assert sorted(summary.top_rois) == [0, 1] and len(summary.top_rois[0]) == 5
    densities = [d for _, d in summary.top_rois[0]]
    assert densities == sorted(densities, reverse=True)
    assert 0 <= summary.localization[1]["roi_precision_at_k"] <= 1
    tops = pd.read_csv(out / "group" / "top_rois.tsv", sep="\t").query("cohort == 'adni'")
    assert summary.p_ad_masked == pytest.approx(
        dict(zip(tops["split"], tops["p_ad_masked"], strict=True))
    )
    assert f"P(AD) masked {summary.p_ad_masked[0]:.2f}" in text
    unfooled = "did not find what its CNN needs" in text
    assert unfooled == any(p >= 0.5 for p in summary.p_ad_masked.values())


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "busy")])
    assert result.exit_code == 1 and "not a demo" in result.output
    assert (tmp_path / "busy" / "thesis.tex").is_file()
