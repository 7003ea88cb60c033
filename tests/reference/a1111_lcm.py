"""SOURCE: AUTOMATIC1111 stable-diffusion-webui v1.10.1 `modules/sd_samplers_lcm.py`: `LCMCompVisDenoiser` (LCM's 50
original timesteps, quantized timesteps, the consistency boundary scalings) and `sample_lcm`, built on k-diffusion's
`DiscreteEpsDDPMDenoiser` (tests/reference/k_diffusion_external.py) as A1111 builds it.

Test-only reference, written for Easel from that file's logic; the model is a plain eps function instead of the
CompVis model, and the device is the CPU.
Upstream style is kept on purpose so it can be read side by side with A1111.
"""

# ruff: noqa
# mypy: ignore-errors

import torch

import tests.reference.k_diffusion_external as kde
import tests.reference.k_diffusion_sampling as kds


class LCMCompVisDenoiser(kde.DiscreteEpsDDPMDenoiser):
    def __init__(self, model, alphas_cumprod):
        timesteps = 1000
        original_timesteps = 50  # LCM Original Timesteps (default=50, for current version of LCM)
        self.skip_steps = timesteps // original_timesteps

        alphas_cumprod_valid = torch.zeros((original_timesteps), dtype=torch.float32)
        for x in range(original_timesteps):
            alphas_cumprod_valid[original_timesteps - 1 - x] = alphas_cumprod[timesteps - 1 - x * self.skip_steps]

        super().__init__(model, alphas_cumprod_valid, quantize=None)

    def get_sigmas(self, n=None):
        if n is None:
            return kds.append_zero(self.sigmas.flip(0))

        start = self.sigma_to_t(self.sigma_max)
        end = self.sigma_to_t(self.sigma_min)

        t = torch.linspace(start, end, n)

        return kds.append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma, quantize=None):
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, timestep):
        t = torch.clamp(
            ((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0, max=(self.sigmas.shape[0] - 1)
        )
        return super().t_to_sigma(t)

    def get_eps(self, *args, **kwargs):
        return self.inner_model(*args, **kwargs)

    def get_scaled_out(self, sigma, output, input):
        sigma_data = 0.5
        scaled_timestep = kds.utils.append_dims(self.sigma_to_t(sigma), output.ndim) * 10.0

        c_skip = sigma_data**2 / (scaled_timestep**2 + sigma_data**2)
        c_out = scaled_timestep / (scaled_timestep**2 + sigma_data**2) ** 0.5

        return c_out * output + c_skip * input

    def forward(self, input, sigma, **kwargs):
        c_out, c_in = [kds.utils.append_dims(x, input.ndim) for x in self.get_scalings(sigma)]
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return self.get_scaled_out(sigma, input + eps * c_out, input)


def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = kds.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x += sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
