"""sfm_ros.training.window_scores: the geometric depth error that decides adaptation's hand-over
prefers the true depth, judged with the motion of tracked corners alone."""
import math

import numpy as np
import torch
import torch.nn as nn

from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.window_scores import geometric_depth_error, window_priors


def test_geometric_depth_error_prefers_the_true_depth():
    """On a rendered street window with its two-view priors, the exact depth explains the views
    better than a constant depth or a depth upside down (lower error), and a window without a
    direction of travel is left out. Measured: 0.0120 against 0.0303 and 0.0256 grey levels (of 1);
    the bound asks for 0.8x."""
    seq = render_sequence(6, 128, 416, seed=0)
    win = seq.images[[1, 3, 5]]
    pT, pw = window_priors(win, seq.K)
    assert (pw[:, 1] > 0).all()

    class Fixed(nn.Module):  # a "model" whose depth is given
        def __init__(self, depth):
            super().__init__()
            self.d = torch.as_tensor(depth, dtype=torch.float32)[None, None]

        def predict_disp(self, x):
            return [1.0 / self.d]
    true = np.minimum(seq.depths[3], 200.0)  # the sky is at infinity
    errs = {name: geometric_depth_error(Fixed(d), [(win, seq.K, pT, pw)], torch.device("cpu"))
            for name, d in (("true", true), ("constant", np.full_like(true, float(np.median(true)))),
                            ("flipped", true[::-1].copy()))}
    assert errs["true"] < 0.8 * errs["constant"] and errs["true"] < 0.8 * errs["flipped"], errs
    no_direction = (win, seq.K, pT, np.zeros_like(pw))
    assert math.isnan(geometric_depth_error(Fixed(true), [no_direction], torch.device("cpu")))
