"""Selectable VAE architectures: one name picks encoder, decoder and the discriminators built to match.

'dcgan'  AVAE Fig. 5 (pipeline.networks: ConvCritic body / ConvGenerator), 32/64/128 px;
'resnet' LSR-GAN 003 App. D Table 3 (pipeline.networks.resnet), 32/64 px;
'avae_s' 004 Table I, NN upsampling, no transposed convs (pipeline.networks.avae_s), 32/64/96 px.
Vector data (toy2d) always uses the two-hidden-layer MLPs of AVAE §5.1, whatever the name.
"""

from __future__ import annotations

from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.networks import Encoder, build_critic, build_generator
from pipeline.networks import avae_s, resnet
from pipeline.sections import NetworkConfig

ARCHITECTURES = ("dcgan", "resnet", "avae_s")


def check_architecture(architecture: str, info: DataInfo) -> None:
    """Raise ValueError naming the fix when `architecture` cannot be built for `info`."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown VAE architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    if info.kind != "image":
        return
    if architecture == "resnet":
        resnet.check_resolution(info.resolution)
    elif architecture == "avae_s":
        avae_s.layout(info.resolution)


def build_encoder(architecture: str, info: DataInfo, net: NetworkConfig, sigma: str) -> nn.Module:
    """Gaussian encoder of the named architecture (sigma: 'learned' or 'encoder')."""
    check_architecture(architecture, info)
    if architecture == "dcgan" or info.kind != "image":
        return Encoder(info, net, sigma)
    out = net.latent_dim * (2 if sigma == "encoder" else 1)
    body = (resnet.ResNetEncoderBody(out, info, net.width) if architecture == "resnet"
            else avae_s.AvaeSEncoderBody(out, info, net.width))
    return Encoder(info, net, sigma, body)


def build_decoder(architecture: str, in_dim: int, info: DataInfo, net: NetworkConfig) -> nn.Module:
    """Decoder / generator of the named architecture: in_dim -> data on the model scale."""
    check_architecture(architecture, info)
    if architecture == "dcgan" or info.kind != "image":
        return build_generator(in_dim, info, net)
    if architecture == "resnet":
        return resnet.ResNetDecoder(in_dim, info, net.width)
    return avae_s.AvaeSDecoder(in_dim, info, net.width)


def build_pooled_discriminator(architecture: str, info: DataInfo, net: NetworkConfig) -> nn.Module:
    """004's discriminator: the encoder of `architecture` with max pooling instead of its
    strided down-sampling, one logit (P(real))."""
    check_architecture(architecture, info)
    if info.kind != "image":
        return build_critic(info, net)
    if architecture == "dcgan":
        return avae_s.max_pool_conv_critic(info, net.width)
    if architecture == "resnet":
        return resnet.ResNetEncoderBody(1, info, net.width, pool="max")
    return avae_s.AvaeSEncoderBody(1, info, net.width, pool="max")


def build_gan_discriminator(architecture: str, info: DataInfo, net: NetworkConfig) -> nn.Module:
    """The image discriminator of a GAN trained on an export of `architecture`: LSR-GAN's DCGAN
    patch discriminator (003 App. D) beside a ResNet VAE, the Table I encoder body (one logit)
    beside an avae_s VAE (it also covers 96 px), else the AVAE Fig. 5 critic."""
    check_architecture(architecture, info)
    if architecture == "resnet" and info.kind == "image":
        return resnet.PatchDiscriminator(info, net.width)
    if architecture == "avae_s" and info.kind == "image":
        return avae_s.AvaeSEncoderBody(1, info, net.width)
    return build_critic(info, net)
