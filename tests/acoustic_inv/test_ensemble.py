"""Deep ensembles: the equal-weight mixture, its sampling, the ensemble model file and ``acoustic-inv ensemble``."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import posterior_fixtures
from acoustic_inv.checkpoint import build_posterior_model, load_checkpoint, load_model, save_ensemble
from acoustic_inv.cli import main
from acoustic_inv.errors import DataError
from acoustic_inv.models import EnsembleModel, UniformMixture
from acoustic_inv.posterior import Posterior
from acoustic_inv.sources import ParamInfo
from acoustic_inv.train_config import TrainConfig


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exit_:  # argparse errors
        code = int(exit_.code or 0)
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


# -- the mixture ---------------------------------------------------------------------------------------


def _two_normals(batch: tuple[int, ...] = ()) -> tuple[Independent, Independent]:
    loc = torch.zeros(*batch, 2, dtype=torch.float64)
    return (Independent(Normal(loc - 5.0, 0.5 * torch.ones_like(loc)), 1),
            Independent(Normal(loc + 5.0, 0.25 * torch.ones_like(loc)), 1))


def test_uniform_mixture_log_prob_is_the_average_density() -> None:
    a, b = _two_normals()
    mixture = UniformMixture([a, b])
    theta = torch.tensor([[-5.0, -4.5], [5.0, 5.2], [0.0, 0.0], [-5.0, 5.0]], dtype=torch.float64)
    expected = torch.log(0.5 * a.log_prob(theta).exp() + 0.5 * b.log_prob(theta).exp())
    torch.testing.assert_close(mixture.log_prob(theta), expected)
    assert mixture.event_shape == (2,) and mixture.batch_shape == ()


def test_uniform_mixture_samples_each_component_half_the_time() -> None:
    torch.manual_seed(0)
    a, b = _two_normals(batch=(3,))
    draws = UniformMixture([a, b]).sample((20_000,))
    assert draws.shape == (20_000, 3, 2)
    from_b = (draws[..., 0] > 0).double()  # the components are 10 standard deviations or more apart
    assert abs(from_b.mean().item() - 0.5) < 0.02
    # within one draw the event stays with one component (no mixing of coordinates)
    assert torch.equal(draws[..., 0] > 0, draws[..., 1] > 0)
    # b's coordinates have standard deviation 0.25
    assert abs(draws[..., 0][draws[..., 0] > 0].std().item() - 0.25) < 0.01


def test_uniform_mixture_refuses_mismatched_components() -> None:
    a, _ = _two_normals()
    c, _ = _two_normals(batch=(2,))
    with pytest.raises(ValueError, match="component 1 has batch/event shape"):
        UniformMixture([a, c])
    with pytest.raises(ValueError, match="at least one"):
        UniformMixture([])


# -- the ensemble model --------------------------------------------------------------------------------


def _shifted_member(shift: float, seed: int) -> torch.nn.Module:
    """An untrained cINN whose parameter transform moves its draws to about ``shift``."""
    config = TrainConfig(n_blocks=2, hidden_width=8, subnet_depth=1, embed_dim=4, seed=seed)
    params = (ParamInfo("a", "m", -math.inf, math.inf), ParamInfo("b", "m", -math.inf, math.inf))
    model = build_posterior_model(config, params, n_features=3)
    model.theta_transform.mean.fill_(shift)
    model.theta_transform.std.fill_(0.1)
    return model.eval()


def test_ensemble_pools_its_members_evenly_and_in_random_order() -> None:
    ensemble = EnsembleModel([_shifted_member(-10.0, 0), _shifted_member(10.0, 1)])
    x = np.zeros(3)
    theta = ensemble.sample(x, 1001, seed=5)
    assert theta.shape == (1001, 2) and theta.dtype == torch.float64
    positive = theta[:, 0] > 0
    assert int((~positive).sum()) == 501 and int(positive.sum()) == 500  # member 0 gets the odd draw
    assert 0.3 < positive[:500].double().mean().item() < 0.7  # shuffled, not in member order
    torch.testing.assert_close(ensemble.sample(x, 1001, seed=5), theta)
    assert not torch.equal(ensemble.sample(x, 1001, seed=6), theta)
    batch = ensemble.sample(np.zeros((4, 3)), 10, seed=0)
    assert batch.shape == (10, 4, 2)
    assert ensemble.architecture == "ensemble of 2 cinn" and ensemble.n_features == 3


def test_ensemble_log_prob_is_the_mixture_of_the_members() -> None:
    members = [_shifted_member(-1.0, 0), _shifted_member(1.0, 1)]
    ensemble = EnsembleModel(members)
    x = np.linspace(-1.0, 1.0, 3)
    theta = torch.tensor([[-1.0, -0.9], [1.1, 1.0], [0.0, 0.0]], dtype=torch.float64)
    expected = torch.logsumexp(torch.stack([m.log_prob(theta, x) for m in members]), dim=0) - math.log(2)
    torch.testing.assert_close(ensemble.log_prob(theta, x), expected)
    torch.testing.assert_close(ensemble.posterior(x).log_prob(theta), expected)


def test_ensemble_refuses_members_that_differ() -> None:
    config = TrainConfig(n_blocks=2, hidden_width=8, subnet_depth=1, embed_dim=4)
    other = build_posterior_model(config, (ParamInfo("a", "m"), ParamInfo("c", "m")), n_features=3)
    with pytest.raises(ValueError, match=r"member 1 has parameters \['a', 'c'\]"):
        EnsembleModel([_shifted_member(0.0, 0), other])
    wider = build_posterior_model(config, (ParamInfo("a", "m"), ParamInfo("b", "m")), n_features=4)
    with pytest.raises(ValueError, match="member 1 takes 4 features, member 0 3"):
        EnsembleModel([_shifted_member(0.0, 0), wider])


# -- ensemble files and the command ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, posterior_fixtures.TinyModel]:
    """The tiny model (seed 0) and a second one trained with ``acoustic-inv train --seed 1``."""
    tiny = posterior_fixtures.tiny_model(tmp_path_factory)
    second = tmp_path_factory.mktemp("ensemble") / "seed1.pt"
    config = tiny.root / "train.toml"
    code, _, err = _run(["train", "--data", str(tiny.dataset), "--config", str(config), "--out", str(second),
                         "--seed", "1", "--quiet"])
    assert code == 0, err
    return tiny.model, second, tiny


def test_train_seed_overrides_the_config(members) -> None:
    first, second, _ = members
    assert load_checkpoint(first)["config"]["seed"] == 0
    assert load_checkpoint(second)["config"]["seed"] == 1


def test_ensemble_command_writes_a_model_that_inverts(members, tmp_path: Path) -> None:
    first, second, tiny = members
    out = tmp_path / "ensemble.pt"
    code, stdout, err = _run(["ensemble", "--out", str(out), str(first), str(second)])
    assert code == 0, err
    assert "ensemble of 2 cinn" in stdout
    posterior = Posterior.load(out)
    assert isinstance(posterior.model, EnsembleModel)
    singles = [Posterior.load(first), Posterior.load(second)]
    x = np.asarray(load_model(first).x_transform.mean, dtype=float)  # a typical feature vector
    draws = posterior.sample(x, 400, seed=0)
    assert draws.sizes == {"draw": 400, "param": 2}
    theta = torch.as_tensor(draws.values[:5])
    expected = torch.logsumexp(torch.stack([p.model.log_prob(theta, x) for p in singles]), 0) - math.log(2)
    torch.testing.assert_close(posterior.model.log_prob(theta, x), expected)
    record = load_checkpoint(out)
    assert [m["config"]["seed"] for m in record["members"]] == [0, 1]
    assert record["inversion"]["scenario"]["name"] == "tiny-pekeris"
    # the whole file is covered by the content hash
    tampered = torch.load(out, weights_only=True)
    key = next(k for k in tampered["members"][1]["state_dict"] if k.endswith("weight"))
    tampered["members"][1]["state_dict"][key] += 1e-4
    torch.save(tampered, tmp_path / "tampered.pt")
    with pytest.raises(DataError, match=r"tampered\.pt: content check failed"):
        Posterior.load(tmp_path / "tampered.pt")


def test_ensemble_command_refuses_bad_members(members, tmp_path: Path) -> None:
    first, second, _ = members
    code, _, err = _run(["ensemble", "--out", str(tmp_path / "one.pt"), str(first)])
    assert code == 2 and "at least two model files" in err
    state = Path(f"{second}.resume")
    assert state.is_file()
    code, _, err = _run(["ensemble", "--out", str(tmp_path / "e.pt"), str(first), str(state)])
    assert code == 2 and "a training state, not a model file" in err
    nested = save_ensemble(tmp_path / "nested.pt", [first, second])
    code, _, err = _run(["ensemble", "--out", str(tmp_path / "e.pt"), str(first), str(nested)])
    assert code == 2 and "is itself an ensemble" in err
    # a member trained for another scenario (edited tones)
    record = torch.load(second, weights_only=True)
    record["inversion"]["observation"]["freqs_hz"] = [51.0, 80.0]
    from acoustic_inv.checkpoint import content_hash

    record["content_sha256"] = content_hash(record)
    torch.save(record, tmp_path / "other.pt")
    code, _, err = _run(["ensemble", "--out", str(tmp_path / "e.pt"), str(first), str(tmp_path / "other.pt")])
    assert code == 2 and "inversion metadata differs" in err and "observation" in err
    assert not (tmp_path / "e.pt").exists()
