# One exported model version as an immutable image: the model-publishing Job (deploy/k8s/base/
# model-publish-job.yaml) copies it onto the shared model volume with deploy/model/publish_model.sh.
# A registry keeps every version, so a rollback is a tag, and pulling needs no object-store credentials.
#   bga-mner export --checkpoint runs/best --target tensorrt --skip-plan --out model_repository --version 2
#   docker build -f deploy/docker/model-repository.Dockerfile -t ghcr.io/bga-mner/model-repository:2 .
# (TensorRT: the plan is built on the cluster, by the serving TensorRT release, so it is not in the image.)
# busybox: the publish script needs only sh, cp, mv, sed, grep and cmp.
FROM busybox:1.36
COPY model_repository/ /model_repository/
# Same uid/gid as Triton's `triton-server` user, so files it writes on the volume are readable by all readers.
USER 1000:1000
