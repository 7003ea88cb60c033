"""k-diffusion's CompVis denoiser wrappers: a discrete DDPM schedule seen as continuous noise levels (sigmas), and
the eps- or v-prediction UNet seen as a denoiser `D(x, sigma)`, which is what the k-diffusion samplers step on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

ModelFn = Callable[..., Tensor]
"""`model_fn(x_in, t, **extra) -> eps (or v)`: the UNet (with CFG) at continuous timestep(s) t, one per image."""

PredictionType = Literal["epsilon", "v_prediction"]


def append_dims(x: Tensor, target_dims: int) -> Tensor:
    """Append trailing singleton dimensions until `x` has `target_dims` dimensions."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


def append_zero(x: Tensor) -> Tensor:
    return torch.cat([x, x.new_zeros([1])])


def ldm_alphas_cumprod(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = 1000,
    beta_schedule: str = "scaled_linear",
) -> Tensor:
    """alphas_cumprod as the CompVis/LDM code A1111 runs computes them: betas and the product in float64, then
    float32. (diffusers computes the betas in float32, which moves the sigmas by up to ~1e-5 relative.)"""
    if beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    else:
        raise ValueError(f"beta_schedule {beta_schedule!r} is not supported (use 'scaled_linear' or 'linear')")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """A1111's `rescale_zero_terminal_snr_abar` (Lin et al. 2023), for models trained with zero terminal SNR: shift
    and scale sqrt(alphas_cumprod) so the last step is pure noise, then set that last value to 4.9e-8 (so the
    largest sigma stays finite, about 4500), as A1111, Forge and ComfyUI do."""
    alphas_bar_sqrt = alphas_cumprod.sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas_bar[-1] = 4.8973451890853435e-08
    return alphas_bar


def model_alphas_cumprod(config: Mapping[str, Any]) -> Tensor:
    """A model's alphas_cumprod from its diffusers scheduler config: the LDM computation, rescaled to zero terminal
    SNR when the config says `rescale_betas_zero_snr`."""
    alphas = ldm_alphas_cumprod(
        float(config.get("beta_start", 0.00085)),
        float(config.get("beta_end", 0.012)),
        int(config.get("num_train_timesteps", 1000)),
        str(config.get("beta_schedule", "scaled_linear")),
    )
    return rescale_zero_terminal_snr(alphas) if config.get("rescale_betas_zero_snr") else alphas


class DiscreteSchedule:
    """A mapping between continuous noise levels (sigmas) and the model's discrete timesteps (k-diffusion's
    `DiscreteSchedule`): `sigmas` ascend with t, and t is interpolated linearly in log sigma."""

    def __init__(self, sigmas: Tensor, quantize: bool = False) -> None:
        self.sigmas = sigmas
        self.log_sigmas = sigmas.log()
        self.quantize = quantize

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0].item())

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1].item())

    def get_sigmas(self, n: int | None = None) -> Tensor:
        """k-diffusion's default discretisation: t spaced linearly from the last timestep to 0, then a final 0."""
        if n is None:
            return append_zero(self.sigmas.flip(0))
        t_max = len(self.sigmas) - 1
        t = torch.linspace(t_max, 0, n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: Tensor, quantize: bool | None = None) -> Tensor:
        quantize = self.quantize if quantize is None else quantize
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        if quantize:
            return dists.abs().argmin(dim=0).view(sigma.shape)
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = (low - log_sigma) / (low - high)
        w = w.clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        t = t.float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()


class Denoiser(DiscreteSchedule):
    """k-diffusion's `CompVisDenoiser` (eps) / `CompVisVDenoiser` (v) around a plain model function.

    `model_fn(x * c_in, t, **extra)` returns eps or v for continuous timesteps t; calling the denoiser returns the
    denoised estimate `x - eps * sigma` (eps) or `v * c_out + x * c_skip` (v), with `c_in = 1 / sqrt(sigma^2 + 1)`.
    """

    sigma_data = 1.0

    def __init__(
        self,
        model_fn: ModelFn,
        alphas_cumprod: Tensor,
        *,
        prediction_type: PredictionType = "epsilon",
        quantize: bool = False,
    ) -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', not {prediction_type!r}")
        super().__init__(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, quantize)
        self.model_fn = model_fn
        self.prediction_type: PredictionType = prediction_type

    @classmethod
    def from_scheduler_config(
        cls, model_fn: ModelFn, config: Mapping[str, Any], *, device: torch.device | str = "cpu"
    ) -> Denoiser:
        """Build from a diffusers scheduler config (beta_start/end, beta_schedule, num_train_timesteps,
        prediction_type, rescale_betas_zero_snr), with alphas_cumprod computed the LDM way as A1111 has them."""
        alphas_cumprod = model_alphas_cumprod(config)
        prediction_type = str(config.get("prediction_type", "epsilon"))
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported by the k-diffusion samplers")
        return cls(model_fn, alphas_cumprod.to(device), prediction_type=prediction_type)  # type: ignore[arg-type]

    def get_scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) for this prediction type."""
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        if self.prediction_type == "epsilon":
            return torch.ones_like(sigma), -sigma, c_in
        c_skip = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        c_out = -sigma * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_skip, c_out, c_in

    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in self.get_scalings(sigma))
        out = self.model_fn(x * c_in, self.sigma_to_t(sigma), **extra)
        if self.prediction_type == "epsilon":
            return x + out * c_out
        return out * c_out + x * c_skip


class LCMDenoiser(Denoiser):
    """A1111's `LCMCompVisDenoiser` (`modules/sd_samplers_lcm.py`): the 50 "original" timesteps an LCM was distilled
    on (every 20th of 1000, counted from the last), timesteps quantized onto them, and the consistency model's
    boundary scalings (sigma_data 0.5, the timestep scaled by 10) around the eps denoiser's estimate."""

    original_timesteps = 50

    def __init__(
        self, model_fn: ModelFn, alphas_cumprod: Tensor, *, prediction_type: PredictionType = "epsilon"
    ) -> None:
        timesteps = len(alphas_cumprod)
        self.skip_steps = timesteps // self.original_timesteps
        valid = torch.zeros(self.original_timesteps, dtype=torch.float32, device=alphas_cumprod.device)
        for x in range(self.original_timesteps):
            valid[self.original_timesteps - 1 - x] = alphas_cumprod[timesteps - 1 - x * self.skip_steps]
        super().__init__(model_fn, valid, prediction_type="epsilon")  # A1111's LCM wraps an eps denoiser

    def get_sigmas(self, n: int | None = None) -> Tensor:
        if n is None:
            return append_zero(self.sigmas.flip(0))
        start = self.sigma_to_t(torch.tensor(self.sigma_max, device=self.sigmas.device))
        end = self.sigma_to_t(torch.tensor(self.sigma_min, device=self.sigmas.device))
        t = torch.linspace(float(start), float(end), n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: Tensor, quantize: bool | None = None) -> Tensor:
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        index = torch.clamp(
            ((t - (self.skip_steps - 1)) / self.skip_steps).float(), min=0, max=self.sigmas.shape[0] - 1
        )
        return super().t_to_sigma(index)

    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        _, c_out, c_in = (append_dims(c, x.ndim) for c in self.get_scalings(sigma))
        eps = self.model_fn(x * c_in, self.sigma_to_t(sigma), **extra)
        denoised = x + eps * c_out
        sigma_data = 0.5
        scaled_timestep = append_dims(self.sigma_to_t(sigma), x.ndim) * 10.0
        c_skip = sigma_data**2 / (scaled_timestep**2 + sigma_data**2)
        c_boundary = scaled_timestep / (scaled_timestep**2 + sigma_data**2) ** 0.5
        out: Tensor = c_boundary * denoised + c_skip * x
        return out


def flux_mu(*, schnell: bool) -> float:
    """Forge's fixed time shift (`PredictionFlux`): schnell's mu is 1.0; dev's is `calculate_shift` at 4096 image
    tokens (base 256 -> 0.5, max 4096 -> 1.15), whatever the image's size (Forge does not bind it to the size)."""
    if schnell:
        return 1.0
    m = (1.15 - 0.5) / (4096 - 256)
    b = 0.5 - m * 256
    return 4096 * m + b


def flux_sigmas(mu: float, table: int = 10000) -> Tensor:
    """Forge's 10,000-entry Flux sigma table: `time_shift(mu, 1, t)` for t = 1/10000 ... 1, as diffusers'
    `FlowMatchEulerDiscreteScheduler.time_shift` computes it (float32)."""
    import math

    t = torch.arange(1, table + 1, 1) / table
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)


class FluxDenoiser(DiscreteSchedule):
    """Forge's `PredictionFlux` (rectified flow, "const" prediction): the model sees x as it is and sigma as its
    timestep, predicts the velocity, and the denoised estimate is `x - v * sigma`. Sigma and timestep are the same
    number, so the schedules that walk timesteps (Normal, SGM Uniform) walk sigmas linearly, as in Forge."""

    def __init__(self, model_fn: ModelFn, mu: float) -> None:
        super().__init__(flux_sigmas(mu))
        self.model_fn = model_fn
        self.mu = mu

    def get_sigmas(self, n: int | None = None) -> Tensor:
        """The "Automatic" schedule: Simple, Forge's Flux default (Forge's own "Automatic" with Euler on Flux
        returns timesteps 9999, 6666, ... as sigmas, a bug not copied)."""
        from engine.ksampling.schedules import simple_sigmas

        if n is None:
            return append_zero(self.sigmas.flip(0))
        return simple_sigmas(n, self)

    def sigma_to_t(self, sigma: Tensor, quantize: bool | None = None) -> Tensor:
        return sigma

    def t_to_sigma(self, t: Tensor) -> Tensor:
        return t.float()

    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        out = self.model_fn(x, sigma, **extra)
        result: Tensor = x - out * append_dims(sigma, x.ndim)
        return result
