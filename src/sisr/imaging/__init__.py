"""Image math as pure functions: MATLAB-exact bicubic resize, BT.601 colour, PSNR/SSIM.

Every function takes numpy arrays stored channels last (HxW, HxWxC, NxHxWxC)
or torch tensors channels first as models use them (HxW, CxHxW, NxCxHxW, on
any device) and answers in the same kind, layout and device.
"""

from sisr.imaging.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from sisr.imaging.metrics import psnr, ssim
from sisr.imaging.resize import bicubic_downgrade, matlab_imresize

__all__ = ["bicubic_downgrade", "matlab_imresize", "psnr", "rgb_to_y", "rgb_to_ycbcr", "ssim", "ycbcr_to_rgb"]
