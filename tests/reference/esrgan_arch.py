"""SOURCE: ESRGAN's original network as xinntao/ESRGAN (old architecture, `block.py` / `architecture.py`) lays it out,
the layout 4x-UltraSharp, Remacri and the NMKD models ship in: `model.0` conv, `model.1` a shortcut around
`sub.N.RDB{1,2,3}.conv{1..5}.0` and `sub.{nb}`, per x2 an upsample + conv at `model.3`, `model.6`..., then two
convs. Real-ESRGAN Compact (xinntao/Real-ESRGAN `srvgg_arch.py`) as `body.N` with a pixel shuffle.

Test-only reference, written for Easel: its own module tree, so that loading a file into it with strict key
matching checks Easel's key mapping and forward pass (`engine.upscalers.arch`) independently.
"""

# ruff: noqa
# mypy: ignore-errors

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualDenseBlock_5C(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(nf, gc, 3, 1, 1), nn.LeakyReLU(0.2))
        self.conv2 = nn.Sequential(nn.Conv2d(nf + gc, gc, 3, 1, 1), nn.LeakyReLU(0.2))
        self.conv3 = nn.Sequential(nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1), nn.LeakyReLU(0.2))
        self.conv4 = nn.Sequential(nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1), nn.LeakyReLU(0.2))
        self.conv5 = nn.Sequential(nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1))

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5.mul(0.2) + x


class RRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1 = ResidualDenseBlock_5C(nf, gc)
        self.RDB2 = ResidualDenseBlock_5C(nf, gc)
        self.RDB3 = ResidualDenseBlock_5C(nf, gc)

    def forward(self, x):
        out = self.RDB3(self.RDB2(self.RDB1(x)))
        return out.mul(0.2) + x


class ShortcutBlock(nn.Module):
    def __init__(self, submodule):
        super().__init__()
        self.sub = submodule

    def forward(self, x):
        return x + self.sub(x)


def old_esrgan(in_nc=3, out_nc=3, nf=64, nb=23, gc=32, upscale=4):
    n_upscale = {1: 0, 2: 1, 4: 2, 8: 3}[upscale]
    layers = [
        nn.Conv2d(in_nc, nf, 3, 1, 1),
        ShortcutBlock(nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)], nn.Conv2d(nf, nf, 3, 1, 1))),
    ]
    for _ in range(n_upscale):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(nf, out_nc, 3, 1, 1)]
    model = nn.Sequential(*layers)
    wrapper = nn.Module()
    wrapper.model = model
    wrapper.forward = model.forward
    return wrapper


def old_to_new_keys(state):
    """The same weights under Real-ESRGAN's names (`conv_first`, `body.N.rdbK.convJ`, `conv_body`, `conv_upI`,
    `conv_hr`, `conv_last`)."""
    import re

    top = max(int(k.split(".")[1]) for k in state if re.match(r"^model\.\d+\.weight$", k))
    nb = len({k.split(".")[3] for k in state if k.startswith("model.1.sub.") and ".RDB" in k})
    out = {}
    for key, value in state.items():
        kind = key.rsplit(".", 1)[1]
        m = re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", key)
        if m:
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{kind}"] = value
        elif key.startswith(f"model.1.sub.{nb}."):
            out[f"conv_body.{kind}"] = value
        else:
            index = int(key.split(".")[1])
            if index == 0:
                out[f"conv_first.{kind}"] = value
            elif index == top:
                out[f"conv_last.{kind}"] = value
            elif index == top - 2:
                out[f"conv_hr.{kind}"] = value
            else:
                out[f"conv_up{index // 3}.{kind}"] = value
    return out


class SRVGGNetCompact(nn.Module):
    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.body = nn.ModuleList()
        self.body.append(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1))
        self.body.append(nn.PReLU(num_parameters=num_feat))
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(nn.PReLU(num_parameters=num_feat))
        self.body.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        return out + base
