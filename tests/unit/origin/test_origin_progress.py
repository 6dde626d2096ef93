"""ProgressParser: ffmpeg's -progress blocks, fed whole, byte by byte, or mangled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from seedcast.origin.progress import MAX_LINE, ProgressParser, ProgressUpdate

BLOCKS = (
    b"frame=15\nfps=0.00\nstream_0_0_q=27.0\nbitrate=N/A\ntotal_size=N/A\n"
    b"out_time_us=1557333\nout_time_ms=1557333\nout_time=00:00:01.557333\n"
    b"dup_frames=0\ndrop_frames=0\nspeed=3.11x\nprogress=continue\n"
    b"frame=900\nfps=57.31\ntotal_size=19000000\nout_time_us=30000000\n"
    b"speed= 2.9x\nprogress=end\n"
)


def test_two_blocks() -> None:
    updates = ProgressParser().feed(BLOCKS)
    assert updates == [
        ProgressUpdate(out_time=1.557333, frame=15, speed=3.11, total_size=None, done=False),
        ProgressUpdate(out_time=30.0, frame=900, speed=2.9, total_size=19000000, done=True),
    ]
    assert updates[0].fraction(30.0) is not None
    assert abs(updates[0].fraction(30.0) - 1.557333 / 30) < 1e-9  # type: ignore[operator]
    assert updates[1].fraction(None) == 1.0
    assert updates[0].fraction(None) is None


def test_byte_by_byte_gives_the_same() -> None:
    parser = ProgressParser()
    updates = []
    for index in range(len(BLOCKS)):
        updates += parser.feed(BLOCKS[index : index + 1])
    assert updates == ProgressParser().feed(BLOCKS)


def test_not_available_values() -> None:
    (update,) = ProgressParser().feed(b"out_time_us=N/A\nspeed=N/A\nframe=x\nprogress=continue\n")
    assert update == ProgressUpdate(None, None, None, None, False)
    (negative,) = ProgressParser().feed(b"out_time_us=-5000\nspeed=inf\nprogress=continue\n")
    assert negative.out_time is None
    assert negative.speed is None


def test_overlong_line_is_dropped() -> None:
    parser = ProgressParser()
    assert parser.feed(b"x" * (MAX_LINE + 10)) == []
    assert parser.feed(b"yyy=1\nframe=3\nprogress=continue\n") == [
        ProgressUpdate(None, 3, None, None, False)
    ]


@given(st.binary(max_size=3000), st.integers(1, 64))
def test_any_bytes_any_split(data: bytes, step: int) -> None:
    parser = ProgressParser()
    for index in range(0, len(data), step):
        for update in parser.feed(data[index : index + step]):
            assert isinstance(update, ProgressUpdate)
    assert len(parser._buffer) <= MAX_LINE + step
