"""walign: train wide NTK-parameterised networks with backprop-free learning rules
(Boopathy & Fiete, ICML 2022) and measure input-weight alignment."""
__version__ = "0.1.0"
