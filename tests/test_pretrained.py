"""msftnet.pretrained: the predictor on several devices."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SHARDED = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from msftnet import pretrained
    assert jax.local_device_count() == 2, jax.devices()
    model = pretrained.load_model(sys.argv[1])
    x = np.random.default_rng(0).uniform(size=(4, 64, 64)).astype("f4")
    four = model(x)
    assert len(four.sharding.device_set) == 2, four.sharding
    three = model(x[:3])                       # padded to 4, trimmed
    assert three.shape == (3, 32, 32, 32), three.shape
    np.testing.assert_allclose(np.asarray(three), np.asarray(four)[:3],
                               atol=1e-6)
    # Each device computed its own half: the same as a single device would.
    one = np.asarray(model(x[1:2]))
    np.testing.assert_allclose(np.asarray(four)[1:2], one, atol=1e-6)
    print("ok")
""")


def test_predictor_splits_the_batch_over_local_devices(small_model_dir):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=2").strip()
  res = subprocess.run([sys.executable, "-c", _SHARDED, str(small_model_dir)],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
  assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
