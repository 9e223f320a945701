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
