from crosearch.progress import Bars, bar, track


def test_track_yields_every_item_and_draws_on_stderr_only(capsys):
    assert list(track(iter(range(5)), "counting", total=5)) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "counting" in captured.err and "5/5" in captured.err


def test_disabled_bars_draw_nothing(capsys):
    assert list(track([1, 2, 3], "quiet", enabled=False)) == [1, 2, 3]
    with bar("quiet bar", 3, enabled=False) as task:
        task.advance(2)
        task.describe("still quiet")
    with Bars(enabled=False) as bars:
        bars.add("quiet task", 4).advance()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bar_counts_advances_and_shows_the_new_description(capsys):
    with bar("first", 10) as task:
        task.advance(3)
        task.advance(0)
        task.describe("second")
        task.advance(4)
    err = capsys.readouterr().err
    assert "second" in err and "7/10" in err


def test_transient_bar_leaves_nothing_behind(capsys):
    assert list(track([1, 2], "gone", transient=True)) == [1, 2]
    assert "gone" not in capsys.readouterr().err
