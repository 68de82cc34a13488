"""The controls bench (issue 6): its evaluation functions on hand-made outputs.

The ideal output (the truth at each setting plus the input's own noise, what a
perfect tool returns) must pass every bar; the untouched input must fail the
bars that ask for a change; deliberate defects (a dark ring, a colour shift, a
residual star) must be caught.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrosharp.bench import controls as K

SEED, SIZE = 5, 256  # not a seed of the bench run


@pytest.fixture(scope="module")
def cases():
    names = ("stars_mono", "stars_rgb", "elliptic_mono", "trailed_mono", "nebula_starless_rgb", "nebula_rgb", "noise_mono")
    return {n: [K.make_control_case(n, SEED, SIZE)] for n in names}


CORRECT = K.BASE.replace(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0)
CORRECT_CASES = ("elliptic_mono", "trailed_mono", "stars_rgb")


def _ideal(cc, params, denoise=0.0):
    return K.truth_at(cc, params).image + (1.0 - denoise) * cc.obs.noise


def test_cases_are_reproducible_and_have_stars_everywhere(cases):
    cc = cases["stars_mono"][0]
    again = K.make_control_case("stars_mono", SEED, SIZE)
    np.testing.assert_array_equal(cc.obs.image, again.obs.image)
    from astrosharp.bench.metrics import regions

    sel = cc.selected[0]
    reg = regions(cc.star_x[sel], cc.star_y[sel], (SIZE, SIZE))
    assert (reg == "centre").sum() >= 4 and (reg == "corner").sum() >= 4
    assert np.all(cc.star_snr[0, sel] >= 50)
    assert cc.obs.saturated.any()  # one clipped star for the ring measure
    with pytest.raises(KeyError):
        K.make_control_case("nope")


def test_the_ideal_output_passes_every_bar(cases):
    m, c = cases["stars_mono"], cases["stars_rgb"]
    b = K.BASE
    rows = []
    for s in (1.0, 0.5):
        p = b.replace(sharpen_stars=s)
        rows += K.eval_sharpen(m + c, [_ideal(x, p) for x in m + c], s)
    rows += K.eval_halos(m, {h: [_ideal(x, b.replace(adjust_halos=h)) for x in m] for h in K.HALOS})
    rows += K.eval_colours(c, [_ideal(x, b) for x in c])
    rows += K.eval_correct({n: cases[n] for n in CORRECT_CASES},
                           {n: [_ideal(x, CORRECT) for x in cases[n]] for n in CORRECT_CASES})
    neb = cases["nebula_starless_rgb"]
    rows += K.eval_manual(neb, [_ideal(x, x.params) for x in neb])
    nr = cases["nebula_rgb"]
    t = [K.truth_at(x, b) for x in nr]
    rows += K.eval_starless(nr, [tt.stars for tt in t], [tt.nonstellar + tt.background + x.obs.noise for tt, x in zip(t, nr)],
                            [_ideal(x, b) for x in nr])
    noi = cases["noise_mono"]
    rows += K.eval_denoise(noi, [_ideal(x, x.params, 1.0) for x in noi], [_ideal(x, x.params, 0.0) for x in noi])
    failed = [(r.bar, r.value, r.target) for r in rows if not r.passed]
    assert not failed
    assert len(rows) == 26
    # the measured values are the physics asked for, not just inside the bars
    by = {r.bar: r for r in rows}
    assert abs(by["sharpen stars 1: FWHM ratio, centre"].value - 0.5) < 0.02
    assert abs(by["sharpen stars 0.5: FWHM ratio, corners"].value - 0.75) < 0.02
    fr = by["halos: 2-4 FWHM annulus flux rises with the control"].details["annulus_fraction"]
    assert fr[0] < 0.5 * fr[2] < fr[4] / 2  # wings much darker at -0.5, much brighter at +0.5
    res = K.ControlsResult(rows=rows, config={"method": "ideal", "seeds": [SEED], "size": SIZE})
    assert "26/26 bars pass" in res.table()
    d = json.loads(json.dumps(res.to_dict()))  # JSON-clean (no inf / NaN)
    assert d["passed"] == d["total"] == 26


def test_the_untouched_input_fails_the_bars_that_ask_for_a_change(cases):
    m, c = cases["stars_mono"], cases["stars_rgb"]
    inp = lambda xs: [x.obs.image for x in xs]  # noqa: E731
    rows = K.eval_sharpen(m + c, inp(m + c), 1.0)
    assert [r.passed for r in rows[:2]] == [False, False]
    assert abs(rows[0].value - 1.0) < 0.03
    halos = K.eval_halos(m, {h: inp(m) for h in K.HALOS})
    assert not halos[0].passed
    corr = {r.bar: r for r in K.eval_correct({n: cases[n] for n in CORRECT_CASES}, {n: inp(cases[n]) for n in CORRECT_CASES})}
    assert not corr["correct only: ellipticity, e=0.25 field"].passed
    assert abs(corr["correct only: ellipticity, e=0.25 field"].value - 0.25) < 0.03
    assert not corr["correct only: ellipticity, trailed field"].passed
    assert not corr["correct only RGB: channel centroid spread (px)"].passed
    man = K.eval_manual(cases["nebula_starless_rgb"], inp(cases["nebula_starless_rgb"]))
    assert not man[0].passed and abs(man[0].value) < 1e-9
    nr = cases["nebula_rgb"]
    st = K.eval_starless(nr, [np.zeros_like(x.obs.image) for x in nr], inp(nr), inp(nr))
    assert not st[0].passed  # every star is a residual star
    assert st[3].passed  # 0 + input == input
    den = K.eval_denoise(cases["noise_mono"], inp(cases["noise_mono"]), inp(cases["noise_mono"]))
    assert not den[0].passed and den[2].passed


def test_defects_are_caught(cases):
    b = K.BASE
    # a dark ring of 3 sigma around every star
    m = cases["stars_mono"]
    cc = m[0]
    ideal = _ideal(cc, b)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    ringed = ideal.copy()
    for i in cc.ringing[0]:
        r = np.hypot(yy - cc.star_y[i], xx - cc.star_x[i]) / cc.star_fwhm[0, i]
        ringed[0][(r > 1.5) & (r < 2.5)] -= 3.0 * cc.obs.sigma[0]
    outs = {h: [_ideal(cc, b.replace(adjust_halos=h))] for h in K.HALOS}
    outs[0.0] = [ringed]
    ring = K.eval_halos(m, outs)[1]
    assert not ring.passed and ring.value > 1.5
    # stars 5% redder and 5% less blue
    c = cases["stars_rgb"][0]
    t = K.truth_at(c, b)
    shifted = _ideal(c, b)
    shifted[0] += 0.05 * t.stars[0]
    shifted[2] -= 0.05 * t.stars[2]
    col = K.eval_colours([c], [shifted])[0]
    assert not col.passed and 0.03 < col.value < 0.07
    # a flux loss of 3% in the stars
    lossy = _ideal(cc, b) - 0.03 * K.truth_at(cc, b).stars
    assert not K.eval_sharpen([cc], [lossy], 1.0)[2].passed
    # starless layer: a hole under one star in three, and layers that do not add up
    nr = cases["nebula_rgb"][0]
    tn = K.truth_at(nr, b)
    ns = tn.nonstellar + tn.background + nr.obs.noise
    holes = ns - 0.5 * tn.stars * (np.arange(SIZE) % 3 == 0)[None, None, :]
    st = K.eval_starless([nr], [tn.stars], [holes], [tn.stars + holes])
    assert not st[1].passed
    bad_sum = K.eval_starless([nr], [tn.stars], [ns], [tn.stars + ns + 1e-3])
    assert not bad_sum[3].passed
    # denoise 0 that smooths the noise away, denoise 1 that leaves half of it
    noi = cases["noise_mono"][0]
    den = K.eval_denoise([noi], [_ideal(noi, noi.params, 0.5)], [_ideal(noi, noi.params, 0.5)])
    assert not den[0].passed and not den[2].passed


def test_the_command_refuses_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        K.main(["--method", "magic"])


def test_run_controls_refuses_an_unknown_method():
    from astrosharp.errors import ParameterError

    with pytest.raises(ParameterError):
        K.run_controls(method="magic")
