# Triton for all three export targets. `tensorrt_plan` and `onnxruntime_onnx` use backends the NGC image
# already has; the `python` target's model.py runs ONNX Runtime inside the python backend and needs
# numpy<2 (numpy 2 silently corrupts tensors in this backend; model.py refuses to start under it).
# Keep TRITON_VERSION equal to the one in deploy/tensorrt/build_plan.sh's container: a TensorRT plan only
# loads in the TensorRT release that built it.
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3
RUN python3 -m pip install --no-cache-dir "numpy<2" "onnxruntime-gpu>=1.17,<2" \
    && python3 -c "import numpy; assert int(numpy.__version__.split('.')[0]) < 2"
EXPOSE 8000 8001 8002
# Run as the image's own non-root user (`triton-server`, uid/gid 1000 in every NGC Triton image) and keep
# NGC's entrypoint in front of tritonserver: it checks the driver and sets up CUDA forward compatibility.
# Kubernetes passes only `args`, so both stay in force there too.
USER 1000:1000
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "tritonserver"]
CMD ["--model-repository=/models", "--model-control-mode=explicit", "--load-model=bga_mner", \
     "--strict-readiness=true", "--exit-on-error=true"]
