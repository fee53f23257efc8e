"""Image classification: timm models on CIFAR-10, ImageNet, an image folder or digits; metric top-1 (%)."""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from pgfsparse.tasks.task import Task


class ImageClassification(Task):
    eval_metric = "top1"

    def __init__(self, cfg):
        self.cfg = cfg
        self._mixup = None

    def build_data(self):
        from pgfsparse.data import build_image_data

        data = build_image_data(self.cfg.data)
        aug = self.cfg.data.augment
        if aug.mixup > 0 or aug.cutmix > 0:  # needs the class count, known only now
            from timm.data import Mixup

            self._mixup = Mixup(
                mixup_alpha=aug.mixup,
                cutmix_alpha=aug.cutmix,
                label_smoothing=aug.label_smoothing,
                num_classes=data.num_classes,
            )
        return data

    def build_model(self, data):
        from pgfsparse.models import build_vision_model

        return build_vision_model(
            self.cfg.model, image_size=data.image_size, channels=data.channels, num_classes=data.num_classes
        )

    def train_examples(self, data) -> int:
        return len(data.train)

    def example_inputs(self, data, device):
        image, _ = data.eval[0]
        return (image.unsqueeze(0).to(device),), {}

    def loss(self, model, batch) -> torch.Tensor:
        images, labels = batch
        if self._mixup is not None and len(images) % 2 == 0:  # timm's Mixup pairs examples
            images, soft = self._mixup(images, labels)
            return torch.sum(-soft * F.log_softmax(model(images).float(), dim=-1), dim=-1).mean()
        logits = model(images)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.data.augment.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model, batches, device, autocast) -> Dict[str, float]:
        correct = total = 0
        loss_sum = 0.0
        for batch in batches:
            images, labels = self.to_device(batch, device)
            with autocast():
                logits = model(images).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(dim=-1) == labels).sum().item()
            total += len(labels)
        return {"top1": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1), "examples": total}
