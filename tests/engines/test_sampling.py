import torch

from deployments.engines.hf.sampling import BatchSampler
from serve_app.protocol.sampling import SamplingParams

LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0, 3.0]])


def draws(params: SamplingParams, n: int = 200, prompt=(0,)) -> set[int]:
    sampler = BatchSampler([params], [list(prompt)], LOGITS.shape[-1])
    return {int(sampler.sample(LOGITS.clone())[0]) for _ in range(n)}


def test_temperature_zero_is_argmax():
    assert draws(SamplingParams(temperature=0.0)) == {4}


def test_top_k_and_top_p_limit_the_candidates():
    assert draws(SamplingParams(top_k=2)) == {0, 4}
    assert draws(SamplingParams(top_p=0.01)) == {4}
    assert draws(SamplingParams(min_p=0.5)) == {4}  # token 0 has e^-1 < 0.5 of the top probability


def test_repetition_penalty_pushes_seen_tokens_down():
    assert draws(SamplingParams(temperature=0.0, repetition_penalty=10.0), prompt=(4,)) == {0}


def test_frequency_penalty_counts_output_tokens():
    sampler = BatchSampler([SamplingParams(temperature=0.0, frequency_penalty=2.0)], [[]], 5)
    first = sampler.sample(LOGITS.clone())
    sampler.observe(first)
    assert int(first[0]) == 4 and int(sampler.sample(LOGITS.clone())[0]) == 0


def test_seed_reproduces_and_rows_keep_their_own_parameters():
    a = BatchSampler([SamplingParams(seed=7), SamplingParams(temperature=0.0)], [[], []], 5)
    b = BatchSampler([SamplingParams(seed=7), SamplingParams(temperature=0.0)], [[], []], 5)
    logits = LOGITS.repeat(2, 1)
    seq_a = [a.sample(logits.clone()).tolist() for _ in range(20)]
    seq_b = [b.sample(logits.clone()).tolist() for _ in range(20)]
    assert seq_a == seq_b and all(row[1] == 4 for row in seq_a)
    a.select([1])
    assert a.sample(LOGITS.clone()).tolist() == [4]


def test_logit_bias_steers_the_choice():
    assert draws(SamplingParams(temperature=0.0, logit_bias=((0, 100.0),))) == {0}
    assert 4 not in draws(SamplingParams(logit_bias=((4, -100.0),)))


def test_end_of_sequence_is_held_back_until_min_tokens_and_always_with_ignore_eos():
    def first_token(params: SamplingParams) -> int:
        sampler = BatchSampler([params], [[]], 5, eos_ids=(4,))  # token 4 is the likeliest and ends the sequence
        return int(sampler.sample(LOGITS.clone())[0])

    assert first_token(SamplingParams(temperature=0.0)) == 4
    assert first_token(SamplingParams(temperature=0.0, min_tokens=2)) != 4
    assert first_token(SamplingParams(temperature=0.0, ignore_eos=True)) != 4
    assert first_token(SamplingParams(temperature=0.0, min_tokens=2, stop_token_ids=(0,))) not in (0, 4)


def test_rows_joining_and_leaving_keep_their_own_bias_holds_and_penalties():
    """The per-row state lives in whole-batch tensors: joining batches pads what one side lacks, leaving drops it."""
    greedy = SamplingParams(temperature=0.0)
    biased = BatchSampler([SamplingParams(temperature=0.0, logit_bias=((1, 100.0),)), greedy], [[], []], 5,
                          eos_ids=(4,))
    held = BatchSampler([SamplingParams(temperature=0.0, min_tokens=2, stop_token_ids=(0,)),
                         SamplingParams(temperature=0.0, ignore_eos=True),
                         SamplingParams(temperature=0.0, repetition_penalty=10.0)], [[], [], [4]], 5, eos_ids=(4,))
    biased.extend(held)
    logits = LOGITS.repeat(5, 1)
    first = biased.sample(logits.clone())
    # bias; plain greedy; end and stop held before min_tokens; end held; the prompt's token penalised
    assert first.tolist() == [1, 4, 1, 0, 0]
    biased.observe(first)
    biased.observe(first)
    assert biased.sample(logits.clone()).tolist() == [1, 4, 4, 0, 1]  # the end allowed; token 0 now seen too
    biased.select([1, 3])
    assert biased.sample(LOGITS.repeat(2, 1)).tolist() == [4, 0]


def test_bias_lists_of_different_lengths_join_and_each_row_keeps_its_own():
    one = BatchSampler([SamplingParams(temperature=0.0, logit_bias=((2, 100.0),))], [[]], 5)
    three = BatchSampler([SamplingParams(temperature=0.0, logit_bias=((4, -100.0), (0, -100.0), (3, 100.0))),
                          SamplingParams(temperature=0.0, logit_bias=((4, -100.0),))], [[], []], 5)
    one.extend(three)
    assert one.sample(LOGITS.repeat(3, 1)).tolist() == [2, 3, 0]
    one.select([0, 2])
    assert one.sample(LOGITS.repeat(2, 1)).tolist() == [2, 0]
