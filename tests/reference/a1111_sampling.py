"""SOURCE: AUTOMATIC1111 stable-diffusion-webui v1.10.1 behaviour: modules/sd_schedulers.py (schedules and its `to_d`
patch), modules/sd_samplers_extra.py (restart_sampler), modules/rng.py + sd_samplers_common.TorchHijack (per-image
noise), sd_samplers_kdiffusion.KDiffusionSampler.get_sigmas / create_noise_sampler.

Test-only reference, written for Easel to reproduce A1111's arithmetic operation for operation (same tensor ops, same
dtypes, same order) on top of the k-diffusion reference copy; it is not A1111's source text (A1111 is AGPL-3.0).
Upstream style is kept on purpose so it can be read side by side with A1111.
"""

# ruff: noqa
# mypy: ignore-errors

import numpy as np
import torch
from scipy import stats

from tests.reference import k_diffusion_sampling as kds


def a1111_to_d(x, sigma, denoised):
    # A1111 replaces k-diffusion's to_d with a plain division (sd_schedulers.py).
    return (x - denoised) / sigma


kds.to_d = a1111_to_d


# --- per-image noise (rng.ImageRNG.next + TorchHijack) ---------------------------------------------------------------


class TorchHijack:
    """Stands in for the `torch` module inside k-diffusion's sampling: randn_like draws from per-image generators."""

    def __init__(self, generators, shape):
        self.generators = generators
        self.shape = shape

    def __getattr__(self, item):
        if item == "randn_like":
            return self.randn_like
        return getattr(torch, item)

    def randn_like(self, x):
        # ImageRNG.next() after the first draw: one randn(shape) per generator, stacked; x only gives the device.
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(x.device)


def hijacked(generators, shape):
    """Context manager: run reference k-diffusion samplers with A1111's noise source."""

    class _Ctx:
        def __enter__(self):
            kds.torch = TorchHijack(generators, shape)

        def __exit__(self, *exc):
            kds.torch = torch

    return _Ctx()


def create_noise_sampler(x, sigmas, seeds):
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return kds.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seeds)


# --- schedules ---------------------------------------------------------------------------------------------------


def uniform(n, sigma_min, sigma_max, inner_model, device):
    return inner_model.get_sigmas(n).to(device)


def sgm_uniform(n, sigma_min, sigma_max, inner_model, device):
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    sigs = [inner_model.t_to_sigma(ts) for ts in torch.linspace(start, end, n + 1)[:-1]]
    sigs += [0.0]
    return torch.FloatTensor(sigs).to(device)


AYS_SD1 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


def align_your_steps(n, sigma_min, sigma_max, device, is_sdxl=False):
    def loglinear_interp(t_steps, num_steps):
        xs = np.linspace(0, 1, len(t_steps))
        ys = np.log(t_steps[::-1])
        new_xs = np.linspace(0, 1, num_steps)
        new_ys = np.interp(new_xs, xs, ys)
        return np.exp(new_ys)[::-1].copy()

    sigmas = list(AYS_SDXL if is_sdxl else AYS_SD1)
    if n != len(sigmas):
        sigmas = np.append(loglinear_interp(sigmas, n), [0.0])
    else:
        sigmas.append(0.0)
    return torch.FloatTensor(sigmas).to(device)


def kl_optimal(n, sigma_min, sigma_max, device):
    alpha_min = torch.arctan(torch.tensor(sigma_min, device=device))
    alpha_max = torch.arctan(torch.tensor(sigma_max, device=device))
    step_indices = torch.arange(n + 1, device=device)
    return torch.tan(step_indices / n * alpha_min + (1.0 - step_indices / n) * alpha_max)


def simple(n, sigma_min, sigma_max, inner_model, device):
    sigs = []
    ss = len(inner_model.sigmas) / n
    for x in range(n):
        sigs += [float(inner_model.sigmas[-(1 + int(x * ss))])]
    sigs += [0.0]
    return torch.FloatTensor(sigs).to(device)


def normal(n, sigma_min, sigma_max, inner_model, device):
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    timesteps = torch.linspace(start, end, n)
    sigs = [inner_model.t_to_sigma(timesteps[x]) for x in range(len(timesteps))]
    sigs += [0.0]
    return torch.FloatTensor(sigs).to(device)


def ddim(n, sigma_min, sigma_max, inner_model, device):
    sigs = []
    ss = max(len(inner_model.sigmas) // n, 1)
    x = 1
    while x < len(inner_model.sigmas):
        sigs += [float(inner_model.sigmas[x])]
        x += ss
    sigs = sigs[::-1]
    sigs += [0.0]
    return torch.FloatTensor(sigs).to(device)


def beta(n, sigma_min, sigma_max, inner_model, device, alpha=0.6, beta_=0.6):
    timesteps = 1 - np.linspace(0, 1, n)
    timesteps = [stats.beta.ppf(x, alpha, beta_) for x in timesteps]
    sigmas = [sigma_min + (x * (sigma_max - sigma_min)) for x in timesteps]
    sigmas += [0.0]
    return torch.FloatTensor(sigmas).to(device)


def get_sigmas(label, steps, inner_model, discard_next_to_last_sigma=False, is_sdxl=False):
    """KDiffusionSampler.get_sigmas with default settings (no min/max/rho overrides)."""
    steps += 1 if discard_next_to_last_sigma else 0
    sigma_min, sigma_max = inner_model.sigmas[0].item(), inner_model.sigmas[-1].item()
    cpu = torch.device("cpu")
    if label == "Automatic":
        sigmas = inner_model.get_sigmas(steps)
    elif label == "Uniform":
        sigmas = uniform(steps, sigma_min, sigma_max, inner_model, cpu)
    elif label == "Karras":
        sigmas = kds.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, device=cpu)
    elif label == "Exponential":
        sigmas = kds.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, device=cpu)
    elif label == "Polyexponential":
        sigmas = kds.get_sigmas_polyexponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, device=cpu)
    elif label == "SGM Uniform":
        sigmas = sgm_uniform(steps, sigma_min, sigma_max, inner_model, cpu)
    elif label == "KL Optimal":
        sigmas = kl_optimal(steps, sigma_min, sigma_max, cpu)
    elif label == "Align Your Steps":
        sigmas = align_your_steps(steps, sigma_min, sigma_max, cpu, is_sdxl=is_sdxl)
    elif label == "Simple":
        sigmas = simple(steps, sigma_min, sigma_max, inner_model, cpu)
    elif label == "Normal":
        sigmas = normal(steps, sigma_min, sigma_max, inner_model, cpu)
    elif label == "DDIM":
        sigmas = ddim(steps, sigma_min, sigma_max, inner_model, cpu)
    elif label == "Beta":
        sigmas = beta(steps, sigma_min, sigma_max, inner_model, cpu)
    else:
        raise KeyError(label)
    if discard_next_to_last_sigma:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


# --- restart sampler (sd_samplers_extra.restart_sampler) ------------------------------------------------------------


@torch.no_grad()
def restart_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, restart_list=None):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    step_id = 0
    to_d, get_sigmas_karras = kds.to_d, kds.get_sigmas_karras

    def heun_step(x, old_sigma, new_sigma, second_order=True):
        nonlocal step_id
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = to_d(x, old_sigma, denoised)
        if callback is not None:
            callback({"x": x, "i": step_id, "sigma": new_sigma, "sigma_hat": old_sigma, "denoised": denoised})
        dt = new_sigma - old_sigma
        if new_sigma == 0 or not second_order:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, new_sigma * s_in, **extra_args)
            d_2 = to_d(x_2, new_sigma, denoised_2)
            x = x + (d + d_2) / 2 * dt
        step_id += 1
        return x

    steps = sigmas.shape[0] - 1
    if restart_list is None:
        if steps >= 20:
            restart_steps = 9
            restart_times = 1
            if steps >= 36:
                restart_steps = steps // 4
                restart_times = 2
            sigmas = get_sigmas_karras(
                steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device
            )
            restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
        else:
            restart_list = {}

    restart_list = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()}

    step_list = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_list:
            restart_steps, restart_times, restart_max = restart_list[i + 1]
            min_idx = i + 1
            max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                sigma_restart = get_sigmas_karras(
                    restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item(), device=sigmas.device
                )[:-1]
                while restart_times > 0:
                    restart_times -= 1
                    step_list.extend(zip(sigma_restart[:-1], sigma_restart[1:]))

    last_sigma = None
    for old_sigma, new_sigma in step_list:
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + kds.torch.randn_like(x) * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        x = heun_step(x, old_sigma, new_sigma)
        last_sigma = new_sigma
    return x


# --- KDiffusionSampler.sample (txt2img) with default settings -------------------------------------------------------

SAMPLERS = {
    "DPM++ 2M": ("sample_dpmpp_2m", {"scheduler": "karras"}),
    "DPM++ SDE": ("sample_dpmpp_sde", {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": (
        "sample_dpmpp_2m_sde",
        {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
    ),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    "DPM++ 3M SDE": (
        "sample_dpmpp_3m_sde",
        {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
    ),
    "Euler a": ("sample_euler_ancestral", {"uses_ensd": True}),
    "Euler": ("sample_euler", {}),
    "LMS": ("sample_lms", {}),
    "Heun": ("sample_heun", {"second_order": True}),
    "DPM2": ("sample_dpm_2", {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    "DPM2 a": (
        "sample_dpm_2_ancestral",
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
    ),
    "DPM fast": ("sample_dpm_fast", {"uses_ensd": True}),
    "DPM adaptive": ("sample_dpm_adaptive", {"uses_ensd": True}),
    "Restart": (restart_sampler, {"scheduler": "karras", "second_order": True}),
}

SCHEDULER_LABELS = {"karras": "Karras", "exponential": "Exponential"}


def sampler_sigmas(label, steps, inner_model, schedule="Automatic"):
    func, options = SAMPLERS[label]
    if schedule == "Automatic" and options.get("scheduler"):
        schedule = SCHEDULER_LABELS[options["scheduler"]]
    return get_sigmas(schedule, steps, inner_model, options.get("discard_next_to_last_sigma", False))


def sample_txt2img(label, model, inner_model, noise, sigmas, steps, seeds, generators, extra_args=None, eta=1.0):
    """A1111's txt2img sampling call: `noise` is the initial noise, `generators` the (ENSD) per-image generators."""
    import inspect

    func, options = SAMPLERS[label]
    func = getattr(kds, func) if isinstance(func, str) else func
    x = noise * sigmas[0]
    parameters = inspect.signature(func).parameters
    kwargs = {}
    if "eta" in parameters:
        kwargs["eta"] = eta
    if "n" in parameters:
        kwargs["n"] = steps
    if "sigma_min" in parameters:
        kwargs["sigma_min"] = inner_model.sigmas[0].item()
        kwargs["sigma_max"] = inner_model.sigmas[-1].item()
    if "sigmas" in parameters:
        kwargs["sigmas"] = sigmas
    if options.get("brownian_noise"):
        kwargs["noise_sampler"] = create_noise_sampler(x, sigmas, seeds)
    if options.get("solver_type") == "heun":
        kwargs["solver_type"] = "heun"
    with hijacked(generators, tuple(noise.shape[1:])):
        return func(model, x, extra_args=extra_args or {}, disable=True, **kwargs)
