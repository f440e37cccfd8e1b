# Pixel types the kernels accept: 8- and 16-bit SEM acquisitions.
from libc.stdint cimport uint8_t, uint16_t

ctypedef fused pixel_t:
    uint8_t
    uint16_t
