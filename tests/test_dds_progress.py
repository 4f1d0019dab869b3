"""The samplers' progress bars reach their totals (the 3D DDS bar used to stop at 48/49)."""

import numpy as np
import pytest
import tqdm as tqdm_module

from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator, birdcage_maps, uniform1d_mask
from krylearn.solvers.dds import GaussianDenoiser, dds_sample, dds_sample_volume, dps_sample
from krylearn.solvers.dds import dds_sampler, dps


class _Recorder(tqdm_module.tqdm):
    """A tqdm that records ``(desc, n, total)`` when it closes."""

    closed = []

    def close(self):
        if not getattr(self, "_recorded", False):
            self._recorded = True
            _Recorder.closed.append((self.desc, self.n, self.total))
        super().close()


@pytest.fixture
def bars(monkeypatch):
    _Recorder.closed = []
    monkeypatch.setattr(dds_sampler, "tqdm", _Recorder)
    monkeypatch.setattr(dps, "tqdm", _Recorder)
    return _Recorder.closed


def test_dds_2d_3d_and_dps_bars_end_at_their_totals(bars):
    nfe = 4
    P = ParallelBeamProjector((8, 8), np.linspace(0, np.pi, 5, endpoint=False))
    vol = np.stack([np.eye(8), np.eye(8)[::-1], np.ones((8, 8))])
    den1 = GaussianDenoiser(np.zeros((1, 8, 8)), var=0.5)
    dds_sample_volume(den1, P, P.apply(vol), nfe=nfe, seed=0, progress=True)
    dds_sample(den1, P, P.apply(vol), nfe=nfe, seed=0, progress=True)
    A = SenseOperator(birdcage_maps(2, (8, 8)), uniform1d_mask(8, 2, acs=0.3, seed=0))
    dps_sample(GaussianDenoiser(np.zeros((2, 8, 8)), var=0.5), A, A.apply(np.ones((8, 8), np.complex64)), nfe=nfe,
               seed=0, progress=True)
    assert [d for d, _, _ in bars] == ["DDS-3D", "DDS", "DPS"]
    for desc, n, total in bars:
        assert total == nfe and n == total, (desc, n, total)
