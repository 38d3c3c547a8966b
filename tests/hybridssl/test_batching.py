import numpy as np
import pytest
import torch

from hybridssl.data.batching import Collator, SafeDataset, StepBatchSampler, merge_batch_report
from hybridssl.data.sample import BadItem, Sample, SkipReport
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer, train_tokenizer


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        if isinstance(it, Exception):
            raise it
        return it


def test_sampler_is_a_function_of_seed_and_step():
    s = StepBatchSampler(10, 4, seed=3, total_steps=6)
    batches = list(s)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    # every epoch is a permutation: steps 0..4 cover 20 positions = 2 full epochs
    flat = [i for b in batches[:5] for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    resumed = list(StepBatchSampler(10, 4, seed=3, total_steps=6, start_step=4))
    assert resumed == batches[4:]
    assert list(StepBatchSampler(10, 4, seed=4, total_steps=6)) != batches
    with pytest.raises(ValueError, match="empty"):
        StepBatchSampler(0, 4, 0, 1)


def test_collator_keeps_partial_modalities_and_counts_skips():
    spec = PreprocessSpec()
    spec.image.size = spec.image.resize = 16
    tok = TextTokenizer(train_tokenizer(["a red circle", "a blue square"] * 10, 60), 8)
    img = np.zeros((20, 20, 3), np.uint8)
    items = [
        Sample("a", image=img, caption="a red circle", audio=np.zeros(8000, np.float32), sample_rate=8000, label=1),
        Sample("b", caption="a blue square"),
        BadItem("c", "unreadable_image", "truncated"),
        Sample("d", image=img, label=0, meta={"repairs": ["mono_mixed"]}),
        Sample("e", audio=np.zeros(100, np.float32), sample_rate=None),
    ]
    safe = SafeDataset(Items(items))
    batch = Collator(spec, tok, ("image", "text", "audio"))([safe[i] for i in range(len(items))])
    assert batch["n"] == 3 and batch["uids"] == ["a", "b", "d"]
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image_idx"].tolist() == [0, 2]
    assert batch["text_idx"].tolist() == [0, 1] and batch["text_ids"].shape == (2, 8)
    assert batch["audio"].shape[0] == 1 and batch["audio_idx"].tolist() == [0]
    assert batch["label"].tolist() == [1, -1, 0]
    report = SkipReport()
    merge_batch_report(report, batch)
    assert report.skipped == {"unreadable_image": 1, "preprocessing_failed": 1}
    assert report.repaired == {"resampled": 1, "mono_mixed": 1}


def test_items_without_a_modality_the_model_uses_are_skipped():
    spec = PreprocessSpec()
    batch = Collator(spec, None, ("image",))([Sample("x", caption="only text")])
    assert batch["n"] == 0 and batch["skipped"][0][1] == "no_usable_modality"


def test_collator_carries_every_captions_paraphrases():
    spec = PreprocessSpec()
    spec.image.size = spec.image.resize = 16
    tok = TextTokenizer(train_tokenizer(["a red circle", "a crimson disc", "a blue square"] * 10, 60), 8)
    items = [Sample("a", caption="a red circle", paraphrases=("a crimson disc", "a scarlet round shape")),
             Sample("b", caption="a blue square"),
             Sample("c", image=np.zeros((20, 20, 3), np.uint8))]
    safe = SafeDataset(Items(items))
    batch = Collator(spec, tok, ("image", "text"))([safe[i] for i in range(3)])
    assert batch["text_para_count"].tolist() == [2, 0]
    expected, _ = tok.encode(["a crimson disc", "a scarlet round shape", "a blue square", "a blue square"])
    assert batch["text_para_ids"].shape == (2, 2, 8)   # K = 2; a caption without any repeats itself
    assert batch["text_para_ids"].flatten(0, 1).tolist() == expected.tolist()
    plain = Collator(spec, tok, ("image", "text"))([safe[1], safe[2]])
    assert "text_para_ids" not in plain   # no item has one: nothing extra is tokenised
