from bench.profile import parse_frame, summarize, thread_group

MAIN = "thread (0x1A): leader;<module> (schedulerd/main.py:100);run (schedulerd/leader.py:90)"
RAW = "\n".join([
    f"{MAIN};cycle (schedulerd/leader.py:150);publish (/x/site-packages/pika/channel.py:400);"
    "poll (selectors.py:10) 60",
    f"{MAIN};_dispatch_due (schedulerd/leader.py:205) 20",
    "thread (0x2B): slot-3;Thread._bootstrap (threading.py:1002);wait (threading.py:320) 15",
    "thread (0x2C): slot-12;Thread._bootstrap (threading.py:1002);handle (workerd/attempt.py:70) 5",
    "garbage line",
])


def test_a_frame_is_split_into_function_file_and_line():
    frame = parse_frame("cycle (schedulerd/leader.py:150)")
    assert frame is not None and (frame.func, frame.file, frame.line) == \
        ("cycle", "schedulerd/leader.py", 150)
    assert frame.ours()
    assert parse_frame("thread (0x1A): leader") is None


def test_library_frames_are_not_ours_even_under_a_project_like_path():
    frame = parse_frame("publish (/v/site-packages/common/x.py:3)")
    assert frame is not None and not frame.ours()


def test_each_sample_is_charged_to_the_deepest_frame_in_our_code():
    s = summarize(RAW)
    assert s.samples == 100
    assert s.ours["schedulerd/leader.py:150 (cycle)"] == 60
    assert s.ours["schedulerd/leader.py:205 (_dispatch_due)"] == 20
    assert s.ours["(not in Zeitplan's code)"] == 15
    assert s.leaves["selectors.py:10 (poll)"] == 60


def test_numbered_threads_are_grouped():
    assert thread_group("slot-12") == "slot-#"
    s = summarize(RAW)
    assert s.threads == {"leader": 80, "slot-#": 20}
    shares = s.as_dict()
    assert shares["threads"][0] == ["leader", 0.8]
    assert shares["ours_by_thread"]["slot-#"][0] == ["(not in Zeitplan's code)", 0.75]
