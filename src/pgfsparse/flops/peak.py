"""Peak FLOP/s of one accelerator: the denominator of MFU (model FLOPs utilisation).

MFU = achieved training FLOP/s (flops.py's count, not the hardware's) / (peak x processes).
The peak is `peak_flops=` when given, else this table's entry for the CUDA (or ROCm) device,
matched as a whole word or words of `torch.cuda.get_device_name()` ("A10" is not in "A100"), the
longest matching key winning ("H100 PCIe" over "H100"); CPUs and unknown devices have none: no MFU
unless given.

Figures are dense (no 2:4 structured sparsity) from the vendors' datasheets and whitepapers:
NVIDIA's A100, H100, H200, L4, L40, L40S, A10, T4 and V100 datasheets, the Ampere GA102 and
Ada AD102 whitepapers (GeForce: BF16 with FP32 accumulate, as PyTorch's matmuls accumulate),
AMD's MI250/MI250X and MI300X/MI325X specifications. The datasheets print sparse figures
next to dense ones (H100 SXM: 1979 sparse, 989 dense): the dense one is kept.
  bf16: the 16-bit tensor / matrix core peak, used for bf16 and fp16 autocast (the same on
        these parts; V100 and T4 have no bf16 units: their fp16 figure).
  fp32: plain FP32 (CUDA-core) peak, PyTorch's default ("highest" float32 matmul precision
        does not use TF32); AMD: the FP32 matrix peak. A run that enables TF32 should give
        its peak with peak_flops= (A100: 156e12, H100 SXM: 494e12).
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import torch

# a word (or words) of the device name -> (bf16 FLOP/s, fp32 FLOP/s), dense
PEAKS: Dict[str, Tuple[float, float]] = {
    "H100": (989e12, 67e12),  # SXM5 (get_device_name: "NVIDIA H100 80GB HBM3")
    "H100 PCIe": (756e12, 51e12),
    "H100 NVL": (835e12, 60e12),
    "H200": (989e12, 67e12),  # SXM: the H100 SXM's compute
    "GH200": (989e12, 67e12),
    "H200 NVL": (835e12, 60e12),
    "A100": (312e12, 19.5e12),  # SXM4 and PCIe alike
    "A10": (125e12, 31.2e12),
    # AWS g5, no public datasheet: the figure in common use; measured bf16 matmuls reach ~69e12, so it
    # may be low: give peak_flops= when the true one is known
    "A10G": (70e12, 31.2e12),
    "L4": (121e12, 30.3e12),
    "L40": (181e12, 90.5e12),
    "L40S": (362e12, 91.6e12),
    "T4": (65e12, 8.1e12),
    "V100": (125e12, 15.7e12),  # SXM2
    "V100-PCIE": (112e12, 14e12),
    "RTX 3090": (71e12, 35.6e12),
    "RTX 3090 Ti": (80e12, 40e12),
    "RTX 4090": (165.2e12, 82.6e12),
    "MI250": (362.1e12, 90.5e12),
    "MI250X": (383e12, 95.7e12),
    "MI300X": (1307.4e12, 163.4e12),
    "MI325X": (1307.4e12, 163.4e12),
}


def table_peak(device_name: str, precision: str) -> Optional[float]:
    """The table's peak for a device name and 'bf16' | 'fp16' | 'fp32', or None when no key matches."""
    matches = [
        key for key in PEAKS if re.search(rf"(?<![a-z0-9]){re.escape(key.lower())}(?![a-z0-9])", device_name.lower())
    ]
    if not matches:
        return None
    bf16, fp32 = PEAKS[max(matches, key=len)]
    return fp32 if precision == "fp32" else bf16


def peak_flops(device: torch.device, precision: str, override: Optional[float] = None) -> Optional[float]:
    """Peak FLOP/s of one `device` at the run's `precision` (config: auto | fp32 | bf16 | fp16).

    `override` (peak_flops=) wins; else the table's entry for a CUDA device; else None (CPU, unknown).
    """
    if override is not None:
        return float(override)
    if device.type != "cuda":
        return None
    if precision == "auto":  # as run_parts.autocast_for: bf16 autocast on GPU
        precision = "bf16"
    return table_peak(torch.cuda.get_device_name(device), precision)
