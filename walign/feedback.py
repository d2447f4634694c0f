"""Linear maps whose backward pass sends the input gradient through a different matrix.

Feedback alignment (FA) and Align-prop keep the forward computation and the weight gradient of a
layer, but propagate the error to the layer's input with fixed feedback weights B instead of the
forward weights W. Doing that inside one autograd Function costs the same as ordinary backprop:
no second network and no extra forward pass.

Under autocast (walign.precision's bf16) the forward's matrix product runs in bfloat16 and the
incoming gradient is bfloat16. The backward then computes in the gradient's dtype and returns each
gradient in its input's dtype (float32 for the parameters), as autograd does for built-in ops.
Without autocast every cast below is a no-op, so float32 and float64 numbers are unchanged.
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
        ctx.weight_shape, ctx.weight_dtype, ctx.stride = weight.shape, weight.dtype, stride
        return F.conv2d(x, weight, stride=stride)

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x.shape, feedback.to(grad.dtype), grad, stride=ctx.stride).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x.to(grad.dtype), ctx.weight_shape, grad, stride=ctx.stride).to(ctx.weight_dtype)
        return grad_x, grad_w, None, None


class FeedbackLinear(torch.autograd.Function):
    """x @ weight.T forward; input gradient via ``feedback`` (same shape as weight)."""

    @staticmethod
    def forward(ctx, x, weight, feedback):
        ctx.save_for_backward(x, feedback)
        ctx.weight_dtype = weight.dtype
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        grad_x = (grad @ feedback.to(grad.dtype)).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad.t() @ x.to(grad.dtype)).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None
