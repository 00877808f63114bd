"""The report's "at the largest batch size" section (estimators.bench.report.largest): the table and the
generated sentences on a synthetic result table with known numbers; every published variant has a correct
counterpart."""
import pandas as pd

import estimators as est
from estimators.bench.report.largest import (COUNTERPARTS, Z_DIFFER, largest_batch, largest_rows, largest_tables,
                                             variant_sentences)


def row(estimator, B, quantity, bias, *, rmse=None, bias_se=0.01, rmse_se=0.01, scenario="s", family="minibatch",
        published=False, k=0, N=100):
    return dict(scenario=scenario, separation=0.5, quantity=quantity, estimator=estimator, batch_size=B, k=k,
                dtype="float64", family=family, published_variant=published, N=N, D=3, replicates=20, status="ok",
                bias=bias, bias_se=bias_se, rmse=abs(bias) if rmse is None else rmse, rmse_se=rmse_se,
                time_per_call_s=1e-3, reference=1.0, reference_se=0.001)


def _table():
    rows = []
    for scenario, shift in (("s", 0.0), ("t", 1.0)):
        for q in ("mi", "tc"):
            rows += [row("mss", 64, q, 0.10, scenario=scenario),
                     row("mss_shipped", 64, q, 0.10 + 0.03 + shift, published=True, scenario=scenario),
                     row("mss", 8, q, 0.5, scenario=scenario)]            # a smaller batch: not in the section
        rows.append(row("moment_tc", 64, "tc", -0.2, family="moment", scenario=scenario))
        rows.append(row("density_ratio", 256, "tc", -0.1, family="density_ratio", k=300, scenario=scenario))
        rows.append(row("mss", 64, "kl_agg", 0.1, scenario=scenario))  # not one of the section's quantities
    return pd.DataFrame(rows)


def test_the_largest_batch_is_the_log_qz_estimators():
    df = _table()
    assert largest_batch(df) == 64  # not the density ratio's training batch of 256
    d = largest_rows(df)
    assert set(d["batch_size"]) == {64} and set(d["quantity"]) == {"mi", "tc"}
    assert list(dict.fromkeys(d["estimator"])) == ["mss", "moment_tc", "mss_shipped"]  # correct, direct, published
    assert set(d["evaluations"]) == {64}


def test_the_table_shows_bias_and_rmse_with_their_se():
    text = largest_tables(_table())[0]
    assert text.startswith("**s** (N = 100, D = 3, R = 20; references: mi = 1.0000 ± 0.0010; tc = 1.0000 ± 0.0010)")
    assert "| estimator | mi bias | mi RMSE | tc bias | tc RMSE | encoder evals |" in text
    assert "| mss | 0.100 ± 0.010 | 0.100 ± 0.010 | 0.100 ± 0.010 | 0.100 ± 0.010 | 64 |" in text
    assert "| moment_tc |  |  | -0.200 ± 0.010 | 0.200 ± 0.010 | 64 |" in text
    assert "| mss_shipped (published) | 0.130 ± 0.010 |" in text


def test_the_sentences_come_from_the_numbers():
    (sentence,) = variant_sentences(_table())
    # differences: 0.03 (2.1 se: not beyond 4) in s, 1.03 in t; RMSE ratios 1.3 and 11.3
    assert sentence.startswith("`mss_shipped` (published) against `mss` at B = 64: on mi its bias is +0.13 to "
                               "+1.13 nats over the 2 scenarios against +0.1 for `mss`, "
                               f"beyond {Z_DIFFER:g} se of it in 1 of 2, and its RMSE 1.3 to 11 times `mss`'s; "
                               "on tc its bias")
    assert sentence.endswith(".")


def test_a_variant_without_its_counterpart_says_so():
    df = pd.DataFrame([row("mss_shipped", 64, "mi", 0.2, published=True), row("naive", 64, "mi", 0.1)])
    assert variant_sentences(df) == ["`mss_shipped` (published): no correct counterpart at B = 64 in this CSV."]


def test_every_published_variant_has_a_correct_counterpart():
    published = {name for name, info in est.ESTIMATORS.items() if info.published_variant}
    assert set(COUNTERPARTS) == published
    for variant, counterpart in COUNTERPARTS.items():
        info = est.ESTIMATORS[counterpart]
        assert not info.published_variant and set(est.ESTIMATORS[variant].quantities) <= set(info.quantities)
