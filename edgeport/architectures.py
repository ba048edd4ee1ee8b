"""Small models of every supported architecture, for the compatibility matrix and its tests.

One entry per architecture: a transformers config small enough to export in seconds, the
model class (the with-teacher classes average their two heads, as transformers does), and
the architecture's own image-processor class with its characteristic steps kept (crops,
shortest-edge resizes, BGR), scaled down to the model's input size. These are test models:
nothing here is read by the export pipeline, which derives everything from the model folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Architecture:
    model_type: str
    config: str  # transformers config class
    config_kwargs: dict[str, Any]
    processor: str  # transformers image-processor class (the one AutoImageProcessor maps it to)
    processor_kwargs: dict[str, Any]
    model_class: str | None = None  # None: AutoModelForImageClassification's choice
    note: str = ""
    train_lr: float = 2e-3  # the matrix's short training; Swinv2 learns nothing at 2e-3 (50.7%), 60.8% at 5e-4
    input_size: tuple[int, int] | None = None  # (H, W) for a processor that fixes none (export's input_size)
    family: str = field(default="", compare=False)


_VIT_LIKE = dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=96)
_CROP_32 = dict(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32})
_SHORT_CROP_32 = dict(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})
_TEXT_TOWER = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100)

ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in [
    Architecture("vit", "ViTConfig", _VIT_LIKE, "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("deit", "DeiTConfig", _VIT_LIKE, "DeiTImageProcessor", _CROP_32,
                 model_class="DeiTForImageClassificationWithTeacher",
                 note="with-teacher head: logits are the mean of the class and distillation heads"),
    Architecture("beit", "BeitConfig", _VIT_LIKE, "BeitImageProcessor", _CROP_32),
    Architecture("swin", "SwinConfig", dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1],
                                             num_heads=[2, 2], window_size=4),
                 "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("swinv2", "Swinv2Config", dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1],
                                                 num_heads=[2, 2], window_size=4),
                 "ViTImageProcessor", dict(size={"height": 32, "width": 32}), train_lr=5e-4),
    Architecture("convnext", "ConvNextConfig", dict(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1]),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    Architecture("convnextv2", "ConvNextV2Config", dict(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1]),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    Architecture("mobilevit", "MobileViTConfig", dict(image_size=32, hidden_sizes=[32, 40, 48],
                                                       neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
                                                       num_attention_heads=2),
                 "MobileViTImageProcessor", dict(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})),
    Architecture("mobilevitv2", "MobileViTV2Config", dict(image_size=64, width_multiplier=0.25),
                 "MobileViTImageProcessor", dict(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64})),
    Architecture("resnet", "ResNetConfig", dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                 layer_type="basic"),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    Architecture("efficientnet", "EfficientNetConfig", dict(image_size=32, width_coefficient=0.1,
                                                             depth_coefficient=0.1, hidden_dim=128),
                 "EfficientNetImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("dinov2", "Dinov2Config", dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2,
                                                 num_attention_heads=4, mlp_ratio=2),
                 "BitImageProcessor", _SHORT_CROP_32),
    Architecture("mobilenet_v2", "MobileNetV2Config", dict(image_size=32, depth_multiplier=0.35, classifier_dropout_prob=0.2),
                 "MobileNetV2ImageProcessor", _SHORT_CROP_32),
    Architecture("levit", "LevitConfig", dict(image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[2, 3, 4],
                                               depths=[1, 1, 1], key_dim=[8, 8, 8]),
                 "LevitImageProcessor", dict(size={"shortest_edge": 56}, crop_size={"height": 64, "width": 64}),
                 model_class="LevitForImageClassificationWithTeacher",
                 note="with-teacher head: logits are the mean of the class and distillation heads"),
    Architecture("regnet", "RegNetConfig", dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                 groups_width=8),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    # Beyond the first list: the other image-classification types optimum's exporter knows, and
    # three it does not (pvt_v2, focalnet, van: optimum's generic vision config).
    Architecture("mobilenet_v1", "MobileNetV1Config", dict(image_size=32, depth_multiplier=0.25, classifier_dropout_prob=0.2),
                 "MobileNetV1ImageProcessor", _SHORT_CROP_32),
    Architecture("poolformer", "PoolFormerConfig", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1]),
                 "PoolFormerImageProcessor", dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                  crop_pct=0.9)),
    Architecture("pvt", "PvtConfig", dict(image_size=32, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                                           num_attention_heads=[1, 1, 2, 2], sequence_reduction_ratios=[4, 2, 1, 1],
                                           mlp_ratios=[2, 2, 2, 2]),
                 "PvtImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("pvt_v2", "PvtV2Config", dict(image_size=32, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                                                num_attention_heads=[1, 1, 2, 2], sr_ratios=[4, 2, 1, 1],
                                                mlp_ratios=[2, 2, 2, 2]),
                 "PvtImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("data2vec-vision", "Data2VecVisionConfig", _VIT_LIKE, "BeitImageProcessor", _CROP_32),
    Architecture("vit_msn", "ViTMSNConfig", _VIT_LIKE, "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("segformer", "SegformerConfig", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                                                       num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32),
                 "SegformerImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("focalnet", "FocalNetConfig", dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                     hidden_sizes=[16, 32]),
                 "BitImageProcessor", _SHORT_CROP_32),
    Architecture("van", "VanConfig", dict(image_size=32, hidden_sizes=[16, 32], depths=[1, 1], mlp_ratios=[2, 2],
                                           patch_sizes=[7, 3], strides=[4, 2]),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    # SigLIP: its classifier reads the vision tower only; the text tower is part of the config.
    Architecture("siglip", "SiglipConfig", dict(vision_config=dict(_VIT_LIKE),
                                                 text_config=dict(hidden_size=32, num_hidden_layers=1,
                                                                  num_attention_heads=2, intermediate_size=64,
                                                                  vocab_size=100)),
                 "SiglipImageProcessor", dict(size={"height": 32, "width": 32})),
    # --- The rest of transformers 4.57.6's image classifiers (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES). The
    # types that cannot be built or read here are in LEFT_OUT below, with the reason; tests/test_matrix.py checks
    # that every type of that map is in one of the two.
    Architecture("bit", "BitConfig", dict(embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], num_groups=4,
                                           layer_type="preactivation", global_padding="same",
                                           embedding_dynamic_padding=True),
                 "BitImageProcessor", _SHORT_CROP_32),
    Architecture("clip", "CLIPConfig", dict(vision_config=dict(_VIT_LIKE), text_config=_TEXT_TOWER, projection_dim=16),
                 "CLIPImageProcessor", _SHORT_CROP_32,
                 note="the classifier reads the vision tower only; the text tower is part of the config"),
    Architecture("metaclip_2", "MetaClip2Config", dict(vision_config=dict(_VIT_LIKE), text_config=_TEXT_TOWER,
                                                        projection_dim=16),
                 "CLIPImageProcessor", _SHORT_CROP_32,
                 note="the classifier reads the vision tower only; the text tower is part of the config"),
    # depth[i] > i: transformers 4.57.6's CvtStage indexes its depth[i] drop-path rates by the stage number
    Architecture("cvt", "CvtConfig", dict(embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3]),
                 "ConvNextImageProcessor", dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    Architecture("dinov2_with_registers", "Dinov2WithRegistersConfig",
                 dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                      mlp_ratio=2, num_register_tokens=2),
                 "BitImageProcessor", _SHORT_CROP_32),  # AutoImageProcessor maps no class to it: DINOv2's
    # hidden_size: the with-teacher class sizes its heads by config.hidden_size, which EfficientFormerConfig lacks
    Architecture("efficientformer", "EfficientFormerConfig",
                 dict(image_size=64, depths=[1, 1, 1, 1], hidden_sizes=[16, 24, 32, 48], hidden_size=48, dim=48,
                      key_dim=8, attention_ratio=2, resolution=2, num_attention_heads=2, num_meta3d_blocks=1,
                      mlp_expansion_ratio=2),
                 "EfficientFormerImageProcessor", dict(size={"shortest_edge": 72},
                                                       crop_size={"height": 64, "width": 64}),
                 model_class="EfficientFormerForImageClassificationWithTeacher",
                 note="with-teacher head: logits are the mean of the class and distillation heads"),
    Architecture("hgnet_v2", "HGNetV2Config", dict(embedding_size=16, stem_channels=[3, 16, 16], hidden_sizes=[32, 48],
                                                    depths=[1, 1], stage_in_channels=[16, 32],
                                                    stage_mid_channels=[16, 16], stage_out_channels=[32, 48],
                                                    stage_num_blocks=[1, 1], stage_downsample=[False, True],
                                                    stage_light_block=[False, True], stage_kernel_size=[3, 5],
                                                    stage_numb_of_layers=[2, 2], use_learnable_affine_block=True),
                 "BitImageProcessor", _SHORT_CROP_32,
                 note="transformers maps no image processor to hgnet_v2; this one resizes the shorter side and "
                      "crops, as PaddleClas's evaluation does"),
    Architecture("hiera", "HieraConfig", dict(embed_dim=16, image_size=[64, 64], depths=[1, 1, 1, 1],
                                               num_heads=[1, 1, 2, 2], mlp_ratio=2.0),
                 "BitImageProcessor", dict(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64})),
    Architecture("ijepa", "IJepaConfig", _VIT_LIKE, "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    Architecture("swiftformer", "SwiftFormerConfig", dict(image_size=64, depths=[1, 1, 1, 1],
                                                           embed_dims=[16, 16, 32, 32]),
                 "ViTImageProcessor", dict(size={"height": 64, "width": 64})),
    # TextNet's processor resizes the shorter side without a crop: the export is given an input size
    Architecture("textnet", "TextNetConfig", dict(image_size=[64, 64], stem_out_channels=16,
                                                   hidden_sizes=[16, 16, 32, 48, 64],
                                                   conv_layer_kernel_sizes=[[[3, 3]], [[3, 3], [1, 3]],
                                                                            [[3, 3], [3, 1]], [[3, 3]]],
                                                   conv_layer_strides=[[1], [2, 1], [2, 1], [2]]),
                 "TextNetImageProcessor", dict(size={"shortest_edge": 64}), input_size=(64, 64),
                 note="its processor resizes the shorter side (rounded up to 32) without a crop, so the export "
                      "fixes the input at 64x64 (input_size)"),
]}


# The image-classification types of transformers 4.57.6 that the registry above does not build, and why.
LEFT_OUT: dict[str, str] = {
    "dinat": "Its neighbourhood attention needs the natten package, which the lock does not hold.",
    "nat": "Its neighbourhood attention needs the natten package, which the lock does not hold.",
    "timm_wrapper": "It wraps a timm model and needs the timm package, which the lock does not hold.",
    "imagegpt": "It classifies sequences of colour-cluster ids (input_ids from ImageGPTImageProcessor), "
                "not pixel_values.",
    "shieldgemma2": "It is a Gemma 3 vision-language model scoring an image against policy prompts: its logits "
                    "are the Yes/No tokens' and it needs the prompts' input_ids beside pixel_values.",
    "siglip2": "Its processor (NaFlex) turns an image into a variable number of patches with an attention "
               "mask and spatial shapes, which the classifier takes instead of a fixed-size image tensor.",
    "perceiver": "PerceiverImageProcessor centre-crops the original image (a square scaled by size/crop_size) "
                 "before resizing it, a step order edgeport's resize-then-crop preprocessing does not have.",
    "donut-swin": "DonutImageProcessor letterboxes: a shortest-edge resize, a second resize (thumbnail) to fit "
                  "the size, then padding to it, steps edgeport's preprocessing does not have.",
    "vit_hybrid": "transformers 4.57.6 can neither build it from a config (its _init_weights zeroes a mask token "
                  "the classifier lacks) nor reload a saved one (model_type 'vit-hybrid' is not its auto map's "
                  "'vit_hybrid').",
}


def make_model(arch: str, out_dir: str | Path, *, labels: tuple[str, ...] = ("female", "male"),
               seed: int = 0) -> Path:
    """Save a random-weight model of ``arch`` with its image processor as a Hugging Face folder."""
    import torch
    import transformers

    spec = ARCHITECTURES[arch]
    config = getattr(transformers, spec.config)(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        **spec.config_kwargs)
    config.edgeport_random_weights = True
    torch.manual_seed(seed)
    if spec.model_class:
        model = getattr(transformers, spec.model_class)(config)
    else:
        model = transformers.AutoModelForImageClassification.from_config(config)
    out = Path(out_dir)
    model.eval().save_pretrained(out, safe_serialization=True)
    getattr(transformers, spec.processor)(**spec.processor_kwargs).save_pretrained(out)
    return out
