"""engine.ksampling against the reference: k-diffusion 0.1.1.post1's own sampling code, driven the way A1111 v1.10
drives it (tests/reference), on a deterministic toy eps model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import tests.reference.a1111_sampling as _a1111
import tests.reference.k_diffusion_external as _kde
import tests.reference.k_diffusion_sampling as _kds
from engine.errors import Cancelled
from engine.ksampling import (
    FUNCTIONS,
    BrownianTreeNoiseSampler,
    Denoiser,
    SamplerSettings,
    ScheduleOptions,
    ensd_generators,
    get_sigmas,
    ldm_alphas_cumprod,
    make_randn_like,
    sample,
    sampler_sigmas,
)
from engine.samplers import SAMPLERS, SCHEDULES

# torchsde warns when a query lands a float32 rounding outside the tree's interval; upstream does the same.
pytestmark = pytest.mark.filterwarnings("ignore:Should have t")

# The references are untyped upstream-style code; reach them through Any.
a1111: Any = _a1111
kde: Any = _kde
kds: Any = _kds

# LCM is a k-diffusion sampler on a denoiser of its own: checked on its own against A1111's (tests/reference/a1111_lcm)
K_SAMPLERS = {s.name: s for s in SAMPLERS if s.family == "k-diffusion" and s.name != "LCM"}
SCHEDULE_LABELS = [s.label for s in SCHEDULES if s.label != "Automatic"]
SHAPE = (4, 8, 8)
SEEDS = [1234, 98765]
STEPS = 8
ALPHAS = ldm_alphas_cumprod()
_MIX = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 0.4


def toy_eps(x_in: Tensor, t: Tensor, *, scale: float = 1.0) -> Tensor:
    """A smooth, image-independent stand-in for a UNet: roughly the ideal eps for unit-variance data (so latents stay
    O(1)) plus a channel-mixing, t-dependent term; honours an extra argument as CFG's scale would."""
    t4 = t[:, None, None, None]
    mixed = torch.einsum("oc,bchw->bohw", _MIX, x_in)
    return (t4 / 999).sqrt() * x_in + scale * 0.2 * torch.tanh(mixed + 0.1 * torch.cos(t4 / 150))


def our_denoiser() -> Denoiser:
    return Denoiser(toy_eps, ALPHAS)


def reference_inner_model() -> Any:
    return kde.DiscreteEpsDDPMDenoiser(toy_eps, ALPHAS, quantize=False)


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def initial_noise(seeds: list[int]) -> Tensor:
    return torch.stack([torch.randn(SHAPE, generator=g) for g in generators(seeds)])


def run_ours(name: str, seeds: list[int], *, steps: int = STEPS, **kwargs: Any) -> Tensor:
    denoiser = our_denoiser()
    sigmas = sampler_sigmas(name, "Automatic", steps, denoiser)
    gens = generators(seeds)
    noise = torch.stack([torch.randn(SHAPE, generator=g) for g in gens])  # consumes the first draw, as A1111
    return sample(
        name,
        denoiser,
        noise * sigmas[0],
        sigmas,
        noise=make_randn_like(gens),
        noise_sampler_seeds=seeds,
        extra_args={"scale": 0.8},
        **kwargs,
    )


def run_reference(name: str, seeds: list[int], *, steps: int = STEPS) -> Tensor:
    inner = reference_inner_model()
    sigmas = a1111.sampler_sigmas(name, steps, inner)
    gens = generators(seeds)
    noise = torch.stack([torch.randn(SHAPE, generator=g) for g in gens])
    result: Tensor = a1111.sample_txt2img(
        name, our_denoiser(), inner, noise, sigmas, steps, seeds, gens, extra_args={"scale": 0.8}
    )
    return result


# --- denoiser -------------------------------------------------------------------------------------------------------


def test_sd_sigma_range_is_a1111s() -> None:
    denoiser = our_denoiser()
    assert round(denoiser.sigma_min, 4) == 0.0292
    assert round(denoiser.sigma_max, 4) == 14.6146


def test_denoiser_matches_k_diffusion_compvis_denoiser() -> None:
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5)) * 4
    sigma = torch.tensor([14.6146, 1.3, 0.0292])
    expected = reference_inner_model()(x, sigma, scale=0.7)
    assert torch.equal(our_denoiser()(x, sigma, scale=0.7), expected)


def test_v_prediction_denoiser_matches_k_diffusion_v_denoiser() -> None:
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([7.0, 0.5])
    expected = kde.DiscreteVDDPMDenoiser(toy_eps, ALPHAS, quantize=False)(x, sigma)
    assert torch.equal(Denoiser(toy_eps, ALPHAS, prediction_type="v_prediction")(x, sigma), expected)


def test_sigma_t_conversions_and_default_discretisation_match_k_diffusion() -> None:
    ours, ref = our_denoiser(), reference_inner_model()
    sigma = torch.tensor([0.0292, 0.1, 1.0, 5.5, 14.6146])
    assert torch.equal(ours.sigma_to_t(sigma), ref.sigma_to_t(sigma))
    t = torch.tensor([0.0, 0.5, 321.25, 999.0])
    assert torch.equal(ours.t_to_sigma(t), ref.t_to_sigma(t))
    assert torch.equal(ours.get_sigmas(20), ref.get_sigmas(20))


def test_from_scheduler_config_uses_the_ldm_alphas() -> None:
    config = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    denoiser = Denoiser.from_scheduler_config(toy_eps, config)
    assert torch.equal(denoiser.sigmas, our_denoiser().sigmas)


# --- schedules ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", SCHEDULE_LABELS)
@pytest.mark.parametrize("n", [1, 7, 10, 11, 20])
def test_schedule_matches_a1111(label: str, n: int) -> None:
    expected = a1111.get_sigmas(label, n, reference_inner_model())
    assert torch.equal(get_sigmas(label, n, our_denoiser()), expected)


@pytest.mark.parametrize("label", SCHEDULE_LABELS)
def test_discarding_the_penultimate_sigma_matches_a1111(label: str) -> None:
    expected = a1111.get_sigmas(label, 9, reference_inner_model(), discard_next_to_last_sigma=True)
    ours = get_sigmas(label, 9, our_denoiser(), discard_penultimate=True)
    assert torch.equal(ours, expected)
    assert len(ours) == 10


def test_align_your_steps_uses_the_sdxl_list_for_sdxl() -> None:
    expected = a1111.get_sigmas("Align Your Steps", 15, reference_inner_model(), is_sdxl=True)
    assert torch.equal(get_sigmas("Align Your Steps", 15, our_denoiser(), options=ScheduleOptions(sdxl=True)), expected)


def test_schedule_overrides_apply_like_the_webui_settings() -> None:
    options = ScheduleOptions(sigma_min=0.1, sigma_max=10.0, rho=5.0)
    expected = kds.get_sigmas_karras(12, 0.1, 10.0, rho=5.0)
    assert torch.equal(get_sigmas("Karras", 12, our_denoiser(), options=options), expected)


def test_schedule_names_and_aliases_are_accepted() -> None:
    denoiser = our_denoiser()
    assert torch.equal(get_sigmas("SGMUniform", 6, denoiser), get_sigmas("SGM Uniform", 6, denoiser))
    assert torch.equal(get_sigmas("karras", 6, denoiser), get_sigmas("Karras", 6, denoiser))


def test_automatic_resolves_per_sampler_like_a1111() -> None:
    inner, ours = reference_inner_model(), our_denoiser()
    for name in K_SAMPLERS:
        assert torch.equal(sampler_sigmas(name, "Automatic", 9, ours), a1111.sampler_sigmas(name, 9, inner)), name


# --- samplers -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_sampler_matches_k_diffusion_driven_like_a1111(name: str) -> None:
    ours = run_ours(name, SEEDS)
    expected = run_reference(name, SEEDS)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("steps", [20, 36])
def test_restart_with_restart_segments_matches_a1111(steps: int) -> None:
    torch.testing.assert_close(
        run_ours("Restart", SEEDS, steps=steps), run_reference("Restart", SEEDS, steps=steps), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("name", ["Euler", "Heun", "DPM2"])
def test_churn_matches_k_diffusion(name: str) -> None:
    denoiser = our_denoiser()
    sigmas = sampler_sigmas(name, "Automatic", STEPS, denoiser)
    x = initial_noise(SEEDS) * sigmas[0]
    func = getattr(kds, a1111.SAMPLERS[name][0])
    with a1111.hijacked(generators(SEEDS), SHAPE):
        expected = func(denoiser, x, sigmas, disable=True, s_churn=1.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.003)
    settings = SamplerSettings(s_churn=1.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.003)
    ours = sample(name, denoiser, x, sigmas, noise=make_randn_like(generators(SEEDS)), settings=settings)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM fast"])
def test_eta_and_s_noise_reach_the_sampler(name: str) -> None:
    default = run_ours(name, SEEDS)
    changed = run_ours(name, SEEDS, settings=SamplerSettings(eta=0.5))
    assert not torch.allclose(default, changed)


@pytest.mark.parametrize("name", [n for n in K_SAMPLERS if n != "DPM adaptive"])
def test_an_image_in_a_batch_equals_the_image_alone(name: str) -> None:
    batched = run_ours(name, SEEDS)
    for i, seed in enumerate(SEEDS):
        torch.testing.assert_close(batched[i : i + 1], run_ours(name, [seed]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [n for n, s in K_SAMPLERS.items() if s.brownian_noise])
def test_sde_samplers_are_deterministic_in_their_seeds(name: str) -> None:
    first, again = run_ours(name, SEEDS), run_ours(name, SEEDS)
    assert torch.equal(first, again)
    assert not torch.allclose(first[1], run_ours(name, [SEEDS[0], 555])[1])


@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_a_raising_callback_cancels_sampling(name: str) -> None:
    seen: list[tuple[int, int | None]] = []

    def callback(i: int, total: int | None) -> None:
        seen.append((i, total))
        if i == 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_ours(name, SEEDS, callback=callback)
    assert [i for i, _ in seen] == [0, 1]


def test_callback_reports_each_step_and_the_total() -> None:
    seen: list[tuple[int, int | None]] = []
    run_ours("Euler a", SEEDS, callback=lambda i, total: seen.append((i, total)))
    assert seen == [(i, STEPS) for i in range(STEPS)]


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # upstream's torch.tensor(tensor)
def test_img2img_gives_dpm_fast_the_schedules_own_range() -> None:
    denoiser = our_denoiser()
    full = sampler_sigmas("DPM fast", "Automatic", 10, denoiser)
    sched = full[4:]
    x = initial_noise(SEEDS) * sched[0]
    with a1111.hijacked(generators(SEEDS), SHAPE):
        expected = kds.sample_dpm_fast(denoiser, x, sched[-2], sched[0], len(sched) - 1, disable=True, eta=1.0)
    ours = sample("DPM fast", denoiser, x, sched, noise=make_randn_like(generators(SEEDS)), full_sigmas=full)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


# --- noise ----------------------------------------------------------------------------------------------------------


def test_randn_like_draws_per_image_so_batches_match_single_images() -> None:
    x = torch.zeros(2, *SHAPE)
    batched = make_randn_like(generators(SEEDS))(x)
    assert torch.equal(batched[1], make_randn_like(generators(SEEDS[1:]))(x[1:])[0])
    assert torch.equal(batched, a1111.TorchHijack(generators(SEEDS), SHAPE).randn_like(x))


def test_randn_like_refuses_a_batch_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="2 generators"):
        make_randn_like(generators([1]))(torch.zeros(2, *SHAPE))


def test_ensd_reseeds_with_seed_plus_delta() -> None:
    gens = generators(SEEDS)
    for g in gens:
        torch.randn(SHAPE, generator=g)
    reseeded = ensd_generators(gens, SEEDS, 31337)
    expected = [torch.randn(SHAPE, generator=g) for g in generators([s + 31337 for s in SEEDS])]
    assert all(torch.equal(torch.randn(SHAPE, generator=g), e) for g, e in zip(reseeded, expected, strict=True))


def test_sampling_with_ensd_matches_a1111() -> None:
    denoiser, inner = our_denoiser(), reference_inner_model()
    sigmas = sampler_sigmas("Euler a", "Automatic", STEPS, denoiser)
    gens = generators(SEEDS)
    noise = torch.stack([torch.randn(SHAPE, generator=g) for g in gens])
    ours = sample(
        "Euler a", denoiser, noise * sigmas[0], sigmas, noise=make_randn_like(ensd_generators(gens, SEEDS, 31337))
    )
    # A1111 (rng.ImageRNG.first) swaps in generators created from seed + ENSD once the initial noise is drawn.
    a1111_gens = generators([s + 31337 for s in SEEDS])
    expected = a1111.sample_txt2img("Euler a", denoiser, inner, noise, sigmas, STEPS, SEEDS, a1111_gens)
    assert torch.equal(ours, expected)
    plain = sample("Euler a", denoiser, noise * sigmas[0], sigmas, noise=make_randn_like(gens))
    assert not torch.allclose(ours, plain)


def test_ensd_zero_keeps_the_generators() -> None:
    gens = generators(SEEDS)
    assert all(a is b for a, b in zip(ensd_generators(gens, SEEDS, 0), gens, strict=True))


def test_brownian_noise_sampler_matches_k_diffusion() -> None:
    x = torch.zeros(2, *SHAPE)
    sigma_min, sigma_max = torch.tensor(0.0292), torch.tensor(14.6146)
    ours = BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=SEEDS)
    ref = kds.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=SEEDS)
    for a, b in [(14.6146, 7.0), (7.0, 1.25), (1.25, 0.0292)]:
        ta, tb = torch.tensor(a), torch.tensor(b)
        assert torch.equal(ours(ta, tb), ref(ta, tb))


# --- the sampler table against A1111's ----------------------------------------------------------------------------


def test_the_k_diffusion_samplers_are_the_webuis_in_its_order() -> None:
    assert list(K_SAMPLERS) == list(a1111.SAMPLERS)


@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_each_k_diffusion_sampler_has_a1111s_options(name: str) -> None:
    spec = K_SAMPLERS[name]
    function, options = a1111.SAMPLERS[name]
    assert spec.function == (function if isinstance(function, str) else "sample_restart")
    assert spec.function in FUNCTIONS
    assert spec.automatic == a1111.SCHEDULER_LABELS.get(options.get("scheduler", ""))
    assert spec.second_order == options.get("second_order", False)
    assert spec.uses_ensd == options.get("uses_ensd", False)
    assert spec.discard_penultimate_sigma == options.get("discard_next_to_last_sigma", False)
    assert spec.brownian_noise == options.get("brownian_noise", False)
    assert dict(spec.options).get("solver_type") == options.get("solver_type")


@pytest.mark.parametrize("schedule", ["Automatic", "Karras", "Exponential"])
def test_lcm_matches_a1111s_lcm_denoiser_and_sampler(schedule: str) -> None:
    import tests.reference.a1111_lcm as _lcm
    from engine.ksampling.denoiser import LCMDenoiser

    lcm: Any = _lcm
    reference = lcm.LCMCompVisDenoiser(toy_eps, ALPHAS)
    ours = LCMDenoiser(toy_eps, ALPHAS)
    assert torch.equal(ours.sigmas, reference.sigmas)
    steps = 6
    sigmas = sampler_sigmas("LCM", schedule, steps, ours)
    if schedule == "Automatic":
        assert torch.equal(sigmas, reference.get_sigmas(steps))
    else:
        assert torch.allclose(sigmas, a1111.sampler_sigmas("Euler", steps, reference, schedule=schedule))
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5)) * 4
    sigma = torch.tensor([14.6146, 1.3, 0.5])
    assert torch.equal(ours(x, sigma, scale=0.7), reference(x, sigma, scale=0.7))
    noise = initial_noise(SEEDS)
    mine = sample("LCM", ours, noise * sigmas[0], sigmas, noise=make_randn_like(generators(SEEDS)),
                  extra_args={"scale": 0.8})  # fmt: skip
    with a1111.hijacked(generators(SEEDS), SHAPE):
        expected = lcm.sample_lcm(reference, noise * sigmas[0], sigmas, extra_args={"scale": 0.8})
    torch.testing.assert_close(mine, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("steps", "t_enc"), [(20, None), (30, None), (3, None), (20, 8), (30, 14), (10, 3)])
def test_unipc_is_a1111s(steps: int, t_enc: int | None) -> None:
    """Easel's UniPC against a transcription of A1111's (tests/reference/a1111_unipc.py): txt2img on A1111's grid
    (30 steps walk 31 timesteps) and img2img from `timesteps[:t_enc]`, A1111's start time included."""
    import tests.reference.a1111_unipc as _unipc
    from engine.ksampling.timesteps import a1111_timesteps, img2img_start, sample_unipc

    reference: Any = _unipc
    timesteps = a1111_timesteps(steps)
    noise = initial_noise(SEEDS)
    x = noise
    if t_enc is not None:
        init = torch.randn(len(SEEDS), *SHAPE, generator=torch.Generator().manual_seed(9))
        x = img2img_start(ALPHAS, timesteps, t_enc, init, noise)
        timesteps = timesteps[:t_enc]
    seen: list[tuple[int, int]] = []
    t_start = timesteps[-1].float() / 1000 + 1 / 1000 if t_enc is not None else None
    mine = sample_unipc(toy_eps, x, ALPHAS, steps=len(timesteps), t_start=t_start,
                        callback=lambda i, n: seen.append((i, n)))  # fmt: skip
    calls: list[int] = []
    expected = reference.unipc(toy_eps, x, timesteps, ALPHAS, is_img2img=t_enc is not None,
                               after_update=lambda *_: calls.append(1))  # fmt: skip
    torch.testing.assert_close(mine, expected, atol=1e-6, rtol=0)
    assert seen == [(i, len(timesteps)) for i in range(1, len(timesteps) + 1)] and len(calls) == len(timesteps)


def test_unipc_with_fewer_steps_than_its_order_lowers_the_order_where_a1111_refuses() -> None:
    import tests.reference.a1111_unipc as _unipc
    from engine.ksampling.timesteps import sample_unipc

    reference: Any = _unipc
    x = initial_noise(SEEDS)
    mine = sample_unipc(toy_eps, x, ALPHAS, steps=2)
    with pytest.raises(AssertionError, match="UniPC order"):
        reference.unipc(toy_eps, x, torch.tensor([1, 501]), ALPHAS)
    sampler = reference.UniPC(toy_eps, reference.NoiseScheduleVP(ALPHAS))
    torch.testing.assert_close(mine, sampler.sample(x, steps=2, order=2), atol=1e-6, rtol=0)
    assert torch.isfinite(sample_unipc(toy_eps, x, ALPHAS, steps=1)).all()
