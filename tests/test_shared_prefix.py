"""The shared-prefix training step (sqltune.shared_prefix) gives the plain loss and gradients."""

from __future__ import annotations

import pytest

from sqltune.shared_prefix import shared_prefix_len

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shared_prefix_len_leaves_a_token_per_sequence():
    assert shared_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2  # never the whole of a sequence
    assert shared_prefix_len([[7, 1], [8, 1]]) == 0 and shared_prefix_len([]) == 0


# ---------------------------------------------------------------- the shared-prefix step is exact
@pytest.mark.parametrize("top", [None, 1])
def test_shared_prefix_loss_and_gradients_equal_the_plain_ones(tiny_model_dir, top):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sqltune.shared_prefix import SharedPrefix, plain_loss
    from sqltune.train_data import ExampleSet, collate

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    layers = None if top is None else [1]
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                             layers_to_transform=layers, init_lora_weights=False))
    model.eval()
    prefix = list(range(100, 160))
    encoded = [(prefix + [7, 8, 9], [10, 11, 12, 13]), (prefix + [7], [10, 11]), (prefix + [5, 6], [4, 3, 2])]
    plain, shared = ExampleSet(encoded, 0), ExampleSet(encoded, len(prefix))
    sp = SharedPrefix(model, prefix)
    assert sp.start == (0 if top is None else 1)
    sp.precompute(model, [shared], batch_size=2, progress=False)

    def run(fn, ds):
        model.zero_grad()
        total, n, _ = fn(model, collate(0)([ds[i] for i in range(len(ds))]))
        (total / n).backward()
        return total.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}

    l0, g0 = run(plain_loss, plain)
    l1, g1 = run(sp.loss, shared)
    assert l1 == pytest.approx(l0, rel=1e-5)
    for k in g0:
        assert torch.allclose(g0[k], g1[k], rtol=1e-4, atol=1e-6), k


def test_prefix_without_gradients_has_the_same_loss_and_other_gradients(tiny_model_dir):
    """`prefix_grad: false` (a cheaper, approximate step): the forward pass and so the loss are the exact
    ones, the adapters still get gradients through the rows, but not through the prefix's keys/values."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sqltune.shared_prefix import SharedPrefix, plain_loss
    from sqltune.train_data import ExampleSet, collate

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["k_proj", "v_proj", "down_proj"], init_lora_weights=False))
    prefix = list(range(100, 160))
    encoded = [(prefix + [7, 8, 9], [10, 11, 12, 13]), (prefix + [5, 6], [4, 3, 2])]
    batch_plain = collate(0)([ExampleSet(encoded, 0)[i] for i in range(2)])
    batch_shared = collate(0)([ExampleSet(encoded, len(prefix))[i] for i in range(2)])

    def grads(fn, batch):
        model.zero_grad()
        total, n, _ = fn(model, batch)
        (total / n).backward()
        return total.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}

    l0, g0 = grads(plain_loss, batch_plain)
    l1, g1 = grads(SharedPrefix(model, prefix, grad=False).loss, batch_shared)
    assert l1 == pytest.approx(l0, rel=1e-5)
    assert all(g.abs().sum() > 0 for k, g in g1.items() if "lora_B" in k)  # every adapter still learns
    assert any(not torch.allclose(g0[k], g1[k], rtol=1e-3, atol=1e-7) for k in g0)  # but not the exact gradient


def test_shared_prefix_under_the_older_mask_api(tiny_model_dir, monkeypatch):
    """transformers before 5.2x (the GPU image's 5.17) names the mask builder's arguments `input_embeds`,
    `past_key_values` and `cache_position`; the shared-prefix step reads the names and stays exact.
    (All layers trainable: the stand-in below cannot say which layer's cache length the old builder
    reads; top-layer training under 5.17 was checked on the H100, BENCHMARKS.md "Fine-tuning".)"""
    import transformers.masking_utils as mu

    real, seen = mu.create_causal_mask, []

    def older(config, input_embeds, attention_mask, cache_position, past_key_values, position_ids=None):
        seen.append(int(cache_position[0]))
        return real(config=config, inputs_embeds=input_embeds, attention_mask=attention_mask, cache=past_key_values,
                    position_ids=position_ids)

    monkeypatch.setattr(mu, "create_causal_mask", older)
    test_shared_prefix_loss_and_gradients_equal_the_plain_ones(tiny_model_dir, None)
    assert 0 in seen and 60 in seen  # the prefix from position 0, the rows after the 60 cached prefix tokens
