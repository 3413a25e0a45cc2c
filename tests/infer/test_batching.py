"""Length-sorted batching keeps outputs in input order."""
from experiments.infer.batching import plan_batches, run_batches


def test_plan_batches_sorts_longest_first_and_covers_every_index():
    lengths = [3, 10, 1, 7, 7, 2]
    batches = plan_batches(lengths, batch_size=4)
    assert batches == [[1, 3, 4, 0], [5, 2]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_plan_batches_unsorted_keeps_input_order():
    assert plan_batches([3, 10, 1], batch_size=2, sort_by_length=False) == [[0, 1], [2]]


def test_token_budget_puts_short_inputs_in_large_batches_and_long_ones_in_small_ones():
    lengths = [100, 10, 10, 10, 10, 10, 60, 60, 10, 300]
    batches = plan_batches(lengths, batch_size=8, max_tokens=200)
    assert batches == [[9], [0, 6], [7, 1, 2], [3, 4, 5, 8]]
    for batch in batches:  # within the budget (padded to the longest), or a single over-long input
        assert max(lengths[i] for i in batch) * len(batch) <= 200 or len(batch) == 1
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_token_budget_without_sorting_counts_the_longest_input_so_far():
    assert plan_batches([10, 50, 10, 10], batch_size=8, sort_by_length=False, max_tokens=100) == [[0, 1], [2, 3]]


def test_run_batches_puts_outputs_back_in_input_order():
    inputs = ["ccc", "a", "bbbbb", "dd"]
    batches = plan_batches([len(x) for x in inputs], batch_size=3)
    seen = []

    def fn(batch):
        seen.append(list(batch))
        return [x.upper() for x in batch]

    run = run_batches(fn, inputs, batches, progress=False)
    assert seen[0] == ["bbbbb", "ccc", "dd"]  # the batch really was length-sorted
    assert run.outputs == ["CCC", "A", "BBBBB", "DD"]
    assert len(run.batch_seconds) == 2 and run.total_seconds >= 0
    assert len(run.batch_starts) == 2 and run.batch_starts[0] <= run.batch_starts[1]
