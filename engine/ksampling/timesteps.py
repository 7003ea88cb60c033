"""A1111's own timestep samplers (`modules/sd_samplers_timesteps_impl.py`): DDIM, DDIM CFG++ and PLMS over A1111's
timestep grid, driven through an eps model (the UNet with CFG) rather than through diffusers' schedulers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

EpsFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[int, int], None]


def a1111_timesteps(steps: int) -> Tensor:
    """`range(0, 1000, 1000 // steps) + 1`, clipped to 999 (leading spacing, offset 1)."""
    return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def _alphas(alphas_cumprod: Tensor, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, alphas_prev


def img2img_start(alphas_cumprod: Tensor, timesteps: Tensor, t_enc: int, x: Tensor, noise: Tensor) -> Tensor:
    """A1111's `sample_img2img` for timestep samplers: the init latents noised to `timesteps[t_enc]`."""
    a = alphas_cumprod[timesteps[t_enc]]
    return x * a.sqrt().to(x.dtype) + noise * (1 - a).sqrt().to(x.dtype)


def sample_ddim(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    eta: float = 0.0,
    randn_like: Callable[[Tensor], Tensor] = torch.randn_like,
    uncond_eps: Callable[[], Tensor] | None = None,
    callback: StepFn | None = None,
) -> Tensor:
    """DDIM; with `uncond_eps` (CFG++), the direction term uses the unconditional prediction instead."""
    alphas, alphas_prev = _alphas(alphas_cumprod, timesteps)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    sigmas = eta * torch.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    s_in = x.new_ones((x.shape[0],))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    total = len(timesteps) - 1
    for i in range(total):
        index = len(timesteps) - 1 - i
        e_t = eps_fn(x, timesteps[index].item() * s_in)
        direction = uncond_eps() if uncond_eps is not None else e_t
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * direction
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * randn_like(x)
        if callback is not None:
            callback(i + 1, total)
    return x


def sample_plms(
    eps_fn: EpsFn,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    *,
    callback: StepFn | None = None,
) -> Tensor:
    """PLMS: a pseudo improved Euler first step, then Adams-Bashforth of order 2, 3, then 4."""
    alphas, alphas_prev = _alphas(alphas_cumprod, timesteps)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    s_in = x.new_ones((x.shape[0],))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps: list[Tensor] = []

    def step(x: Tensor, e_t: Tensor, index: int) -> Tensor:
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    total = len(timesteps) - 1
    for i in range(total):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = eps_fn(x, ts)
        if not old_eps:
            x_prev = step(x, e_t, index)
            e_t_prime = (e_t + eps_fn(x_prev, t_next)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x = step(x, e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        if callback is not None:
            callback(i + 1, total)
    return x


class _VPSchedule:
    """UniPC's view of a discrete-time model (A1111's `NoiseScheduleVP('discrete')`): log alpha_t interpolated
    linearly between the model's N timesteps placed at t = 1/N ... 1, and sigma_t and the half-log-SNR from it."""

    def __init__(self, alphas_cumprod: Tensor) -> None:
        self.total = len(alphas_cumprod)
        self.t = torch.linspace(0.0, 1.0, self.total + 1)[1:]
        self.log_alpha = 0.5 * torch.log(alphas_cumprod.float().cpu())

    def log_alpha_at(self, t: Tensor) -> Tensor:
        """Piecewise-linear in t; beyond the ends, the outermost segment continued."""
        flat = t.reshape(-1).cpu()
        right = torch.searchsorted(self.t, flat).clamp(1, self.total - 1)
        x0, x1 = self.t[right - 1], self.t[right]
        y0, y1 = self.log_alpha[right - 1], self.log_alpha[right]
        return (y0 + (flat - x0) * (y1 - y0) / (x1 - x0)).reshape(t.shape).to(t.device)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self.log_alpha_at(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha_at(t)))

    def lam(self, t: Tensor) -> Tensor:
        log_alpha = self.log_alpha_at(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def sample_unipc(
    eps_fn: EpsFn,
    x: Tensor,
    alphas_cumprod: Tensor,
    *,
    steps: int,
    t_start: Tensor | None = None,
    order: int = 3,
    callback: StepFn | None = None,
) -> Tensor:
    """A1111's UniPC (`modules/models/diffusion/uni_pc`, as `sd_samplers_timesteps_impl.unipc` runs it with the
    default settings): the B(h) = h variant (bh1), multistep, order 3 with lower orders for the first and last
    steps, time-uniform steps from t_start (1 for txt2img) to 1/N, predicting x0, the corrector after every step
    but the last. `steps` model calls; the model sees the continuous time as (t - 1/N) * 1000.

    A1111 refuses fewer steps than the order; here the order drops to the steps instead."""
    schedule = _VPSchedule(alphas_cumprod)
    order = max(1, min(order, steps))
    t_end = 1.0 / schedule.total
    times = torch.linspace(t_start if t_start is not None else 1.0, t_end, steps + 1).to(x.device)
    dims = (-1,) + (1,) * (x.dim() - 1)

    def data(x_t: Tensor, t: Tensor) -> Tensor:
        eps = eps_fn(x_t, ((t - t_end) * 1000.0).expand(x_t.shape[0]))
        return (x_t - schedule.sigma(t).reshape(dims) * eps) / schedule.alpha(t).reshape(dims)

    def update(x_t: Tensor, models: list[Tensor], times_prev: list[Tensor], t: Tensor, step_order: int,
               corrector: bool) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        lam_prev, lam_t = schedule.lam(times_prev[-1]), schedule.lam(t)
        h = lam_t - lam_prev
        ratios = [(schedule.lam(times_prev[-(i + 1)]) - lam_prev) / h for i in range(1, step_order)]
        diffs = [(models[-(i + 1)] - models[-1]) / ratio for i, ratio in enumerate(ratios, start=1)]
        rks = torch.tensor([*(float(r) for r in ratios), 1.0], device=x_t.device)
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        rows, b = [], []
        for i in range(1, step_order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(float(h_phi_k * factorial / hh))
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_matrix, b_vector = torch.stack(rows), torch.tensor(b, device=x_t.device)
        alpha_t = schedule.alpha(t)
        base = (schedule.sigma(t) / schedule.sigma(times_prev[-1])).reshape(dims) * x_t - (alpha_t * h_phi_1).reshape(
            dims
        ) * models[-1]
        scale = (alpha_t * hh).reshape(dims)
        predicted = base
        if diffs:
            rhos_p = (torch.tensor([0.5], device=x_t.device) if step_order == 2
                      else torch.linalg.solve(r_matrix[:-1, :-1], b_vector[:-1]))  # fmt: skip
            predicted = base - scale * sum(rho * diff for rho, diff in zip(rhos_p, diffs, strict=True))
        if not corrector:
            return predicted, None
        rhos_c = torch.tensor([0.5], device=x_t.device) if step_order == 1 else torch.linalg.solve(r_matrix, b_vector)
        model_t = data(predicted, t)
        residual = sum((rho * diff for rho, diff in zip(rhos_c[:-1], diffs, strict=True)), torch.zeros_like(x_t))
        return base - scale * (residual + rhos_c[-1] * (model_t - models[-1])), model_t

    t0 = times[0]
    models, times_prev = [data(x, t0)], [t0]
    done = 0
    for init_order in range(1, order):  # the first steps, at the orders the history allows
        t = times[init_order]
        x, model_x = update(x, models, times_prev, t, init_order, corrector=True)
        assert model_x is not None
        models.append(model_x)
        times_prev.append(t)
        done += 1
        if callback is not None:
            callback(done, steps)
    for step in range(order, steps + 1):
        t = times[step]
        step_order = min(order, steps + 1 - step)  # lower orders for the final steps
        x, model_x = update(x, models, times_prev, t, step_order, corrector=step < steps)
        models, times_prev = [*models[1:], models[-1]], [*times_prev[1:], t]
        if step < steps:
            models[-1] = model_x if model_x is not None else data(x, t)
        done += 1
        if callback is not None:
            callback(done, steps)
    return x
