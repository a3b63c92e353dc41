"""What a run's directory tells about it besides its checkpoint."""

import json

from ga_jax.train.runs import training_minutes


def test_training_minutes_sums_the_logged_gaps_without_the_pauses(tmp_path):
    assert training_minutes(tmp_path) is None  # no metrics.jsonl
    # Rows every 60 s for 10 minutes, a 2-hour pause (stopped, resumed), 5 more minutes, and
    # the partial last line a killed run leaves.
    times = [1000.0 + 60 * i for i in range(11)]
    times += [times[-1] + 7200 + 60 * i for i in range(6)]
    lines = [json.dumps({"step": 20 * i, "time": t}) for i, t in enumerate(times)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 400, "ti')
    assert training_minutes(tmp_path) == 15.0
    (tmp_path / "metrics.jsonl").write_text(lines[0] + "\n")
    assert training_minutes(tmp_path) is None
