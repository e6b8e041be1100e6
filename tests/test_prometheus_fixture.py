import time


def test_remote_write_samples_are_queryable_exactly(prometheus):
    now = time.time()
    samples = [(now - 60 + i, float(i)) for i in range(61)]
    prometheus.push([({"__name__": "vllm:num_requests_waiting", "pod": "p1"}, samples)])
    result = prometheus.query("vllm:num_requests_waiting", at=now)
    assert result[0]["metric"]["pod"] == "p1"
    assert float(result[0]["value"][1]) == 60.0
    # the counter rose by exactly 1 per second
    rate = prometheus.query("rate(vllm:num_requests_waiting[30s])", at=now)
    assert abs(float(rate[0]["value"][1]) - 1.0) < 1e-9
