"""sfm_ros.cli.common: the usage error, the parser, --set overrides, one-line errors, JSON values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sfm_ros.cli.common import Parser, UsageError, int_at_least, jsonable, one_line, report_error, set_override
from sfm_ros.core.options import Options


def test_parser_raises_usage_error():
    p = Parser(prog="tool")
    p.add_argument("--n", type=int)
    with pytest.raises(UsageError, match=r"invalid int value: 'x' \(see tool --help\)"):
        p.parse_args(["--n", "x"])


@pytest.mark.parametrize("text", ["0", "-3", "x", "1.5", ""])
def test_int_at_least_names_the_argument_and_the_bound(text):
    p = Parser(prog="tool")
    p.add_argument("--threads", type=int_at_least(1))
    with pytest.raises(UsageError, match=rf"argument --threads: expected an integer >= 1, got '{text}' \(see tool --help\)"):
        p.parse_args(["--threads", text])
    assert p.parse_args(["--threads", "1"]).threads == 1 and p.parse_args([]).threads is None


def test_set_override_keeps_string_options_as_written():
    opts = Options()
    set_override(opts, "train.amp=off")
    set_override(opts, "loss.smooth_weight=0.25")
    assert opts.train.amp == "off" and opts.loss.smooth_weight == 0.25
    with pytest.raises(ValueError):
        set_override(opts, "train.no_such_key=1")


def test_one_line_report_and_jsonable(capsys):
    assert one_line(ValueError("a\n  b")) == "a b" and one_line(KeyError()) == "KeyError"
    assert report_error("tool", ValueError("bad\ninput")) == 2
    assert capsys.readouterr().err == "tool: error: bad input\n"
    out = jsonable({1: np.arange(2), "x": (np.float32(0.5), math.nan, np.int64(3))})
    assert out == {"1": [0, 1], "x": [0.5, None, 3]}
