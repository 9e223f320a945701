"""benchmarks/cassi_speed.py runs without data and prints one timing row per size and method."""


def test_cassi_speed_prints_a_row_per_size_and_method(load_benchmark, capsys):
    rc = load_benchmark("cassi_speed").main(
        ["--device", "cpu", "--sizes", "32,48", "--methods", "s2former-unfolded,gap-tv",
         "--repeat", "1", "--threads", "1"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[0].startswith("device: CPU")
    rows = [line.split() for line in out[2:]]
    assert [(r[0], r[1]) for r in rows] == [("32x86", "s2former-unfolded"), ("32x86", "gap-tv"),
                                            ("48x102", "s2former-unfolded"), ("48x102", "gap-tv")]
    assert all(float(r[2]) > 0 for r in rows)


def test_cassi_speed_refuses_unknown_methods(load_benchmark, capsys):
    assert load_benchmark("cassi_speed").main(["--device", "cpu", "--methods", "nosuch"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_cassi_speed_refuses_empty_lists_and_bad_values(load_benchmark, capsys):
    cs = load_benchmark("cassi_speed")
    for argv, says in ((["--methods", ","], "names no method"), (["--methods", ""], "names no method"),
                       (["--sizes", "0"], "--sizes must be positive"), (["--sizes", ","], "--sizes"),
                       (["--repeat", "0"], "--repeat"), (["--threads", "-1"], "--threads"),
                       (["--sizes", "32", "--mask", "m.mat"], "not both"),
                       (["--mask", "nosuch.mat"], "file not found")):
        assert cs.main(["--device", "cpu", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (argv, err)


def test_cassi_speed_times_with_given_mask_files(load_benchmark, tmp_path, capsys):
    import numpy as np
    import scipy.io as sio

    rng = np.random.default_rng(0)
    sio.savemat(tmp_path / "ma.mat", {"mask": rng.random((24, 40)).astype(np.float32)})
    sio.savemat(tmp_path / "mb.mat", {"mask": (rng.random((32, 32)) > 0.5).astype(np.float64)})
    sio.savemat(tmp_path / "bad.mat", {"mask": rng.random((16, 16)).astype(np.float32) * 255})
    cs = load_benchmark("cassi_speed")
    rc = cs.main(["--device", "cpu", "--mask", f"{tmp_path / 'ma.mat'},{tmp_path / 'mb.mat'}",
                  "--methods", "gap-tv", "--repeat", "1", "--threads", "1"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and "masks: ma.mat (24x40), mb.mat (32x32)" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [(r[0], r[1], r[-1]) for r in rows] == [("24x94", "gap-tv", "ma.mat"), ("32x86", "gap-tv", "mb.mat")]
    assert cs.main(["--device", "cpu", "--mask", str(tmp_path / "bad.mat"), "--methods", "gap-tv"]) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_cassi_speed_mask_tsa_uses_the_data_folder(load_benchmark, fake_cassi_data, tmp_path,
                                                   monkeypatch, capsys):
    cs = load_benchmark("cassi_speed")
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "none"))
    assert cs.main(["--device", "cpu", "--mask", "tsa", "--methods", "gap-tv"]) == 2
    assert "mask_256.mat" in capsys.readouterr().err
    # generated stand-ins for the TSA-Net masks (32x32 "simulation", 40x40 "real")
    monkeypatch.setenv("HSIRESTORE_DATA", str(fake_cassi_data(tmp_path / "d", sim=32, real=40, val=0)))
    rc = cs.main(["--device", "cpu", "--mask", "tsa", "--methods", "gap-tv", "--repeat", "1",
                  "--threads", "1"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and "masks: mask_256.mat (32x32), mask_real_660.mat (40x40)" in out[0]
    assert [line.split()[0] for line in out[2:]] == ["32x86", "40x94"]
