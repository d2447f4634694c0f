"""Linear maps whose backward pass sends the input gradient through a different matrix.

Feedback alignment (FA) and Align-prop keep the forward computation and the weight gradient of a
layer, but propagate the error to the layer's input with fixed feedback weights B instead of the
forward weights W. Doing that inside one autograd Function costs the same as ordinary backprop:
no second network and no extra forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


class FeedbackConv2d(torch.autograd.Function):
    """conv2d(x, weight) forward (no padding, given stride); input gradient via ``feedback``."""

    @staticmethod
    def forward(ctx, x, weight, feedback, stride):
        ctx.save_for_backward(x, feedback)
        ctx.weight_shape, ctx.stride = weight.shape, stride
        return F.conv2d(x, weight, stride=stride)

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x.shape, feedback, grad, stride=ctx.stride)
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x, ctx.weight_shape, grad, stride=ctx.stride)
        return grad_x, grad_w, None, None


class FeedbackLinear(torch.autograd.Function):
    """x @ weight.T forward; input gradient via ``feedback`` (same shape as weight)."""

    @staticmethod
    def forward(ctx, x, weight, feedback):
        ctx.save_for_backward(x, feedback)
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        grad_x = grad @ feedback if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None
