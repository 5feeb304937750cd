# Sourced by the benchmarks/gpu_*.sh recipes (repository root, on the GPU machine): the carried wheels and body cache.
# gpu_setup: install .whl/*.whl into /tmp/site, unpack .carry/body.safetensors.xz (the uncompressed cache with the
# weights overflows the 64 MiB tree) to /tmp/body.safetensors, export PYTHONPATH and HUMANSPLAT_BODY_CACHE, put the
# autoencoder back into every generator carried in .carry/ without it (scripts/generator_carry.py: each call gets a
# fresh copy of the tree, so this runs in every call), and build gsplat once, before any second process can start a
# colliding build. DEVICE=cpu: only the body cache and the generators.
gpu_setup() {
  local py=${PY:-python3}
  if [ -f .carry/body.safetensors.xz ] && [ ! -f /tmp/body.safetensors ]; then
    $py -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.carry/body.safetensors.xz'), open('/tmp/body.safetensors.tmp', 'wb'))" &&
      mv /tmp/body.safetensors.tmp /tmp/body.safetensors
  fi
  export HUMANSPLAT_BODY_CACHE=$([ -f /tmp/body.safetensors ] && echo /tmp/body.safetensors || echo $PWD/.carry/body.safetensors)
  local d
  for d in .carry/*/; do
    grep -qs '"humansplat-generator"' "$d/config.json" && { $py scripts/generator_carry.py restore "$d" || return 1; }
  done
  [ "${DEVICE:-cuda}" = cuda ] || { export PYTHONPATH=$PWD/src; return 0; }
  [ -d /tmp/site/gsplat ] || $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site:$PWD/src TORCH_CUDA_ARCH_LIST=9.0
  timeout 200 $py -c "import gsplat.cuda._backend as b; assert b._C is not None" || return 1
}
