"""ZenML's BentoML local deployment, made to run BentoML >= 1.2 services.

Upstream bug (ZenML 0.98, zenml.integrations.bentoml.services.bentoml_local_deployment):
``BentoMLLocalDeploymentService.run()`` tells the pre-1.2 BentoML API from the new one with
``isinstance(svc, bentoml.Service)``; in BentoML 1.4 ``bentoml.Service`` *is* the new class,
so every new-style service is started with the legacy server and the daemon dies ('Service'
has no 'runners'). The subclass below starts the new server; ``deploy_with_service_class``
makes ZenML's deployer create it, through the deployer's private ``_create_new_service``
(the only place that names the service class). Remove both when ZenML fixes the check.
"""

from __future__ import annotations

import functools
from typing import Any

from zenml.integrations.bentoml.services.bentoml_local_deployment import (
    BentoMLLocalDeploymentConfig,
    BentoMLLocalDeploymentService,
)
from zenml.logger import get_logger

logger = get_logger(__name__)


class RxVisionBentoMLLocalService(BentoMLLocalDeploymentService):
    """ZenML 0.98's BentoML local service, able to run a BentoML >= 1.2 service. Same type
    descriptor, so ZenML lists and manages it as a BentoML deployment."""

    def run(self) -> None:
        import bentoml
        from _bentoml_impl.server import serve_http

        self.endpoint.prepare_for_start()
        working_dir = self.config.working_dir or "."
        svc = bentoml.load(self.config.bento_tag, working_dir=working_dir)
        svc.inject_config()
        try:
            serve_http(
                self.config.bento_tag,
                working_dir=working_dir,
                host=self.config.host or "127.0.0.1",
                port=self.config.port,
                backlog=self.config.backlog,
            )
        except KeyboardInterrupt:
            logger.info("stopping the BentoML service")


def deploy_with_service_class(config: BentoMLLocalDeploymentConfig, timeout: int) -> Any:
    """``BentoMLModelDeployer.deploy_model`` with our service class (replacing an existing
    deployment of the model); returns the running service."""
    from zenml.integrations.bentoml.model_deployers import BentoMLModelDeployer

    deployer = BentoMLModelDeployer.get_active_model_deployer()

    def create(self: Any, id: Any, timeout: int, config: BentoMLLocalDeploymentConfig) -> Any:
        config.root_runtime_path = self.local_path
        service = RxVisionBentoMLLocalService(uuid=id, config=config)
        service.start(timeout=timeout)
        return service

    if not hasattr(deployer, "_create_new_service"):  # guard: the private hook moved upstream
        raise RuntimeError(
            "ZenML's BentoMLModelDeployer has no _create_new_service; update steps/bentoml_local.py"
        )
    deployer._create_new_service = functools.partial(
        create, deployer
    )  # only the service class differs
    try:
        return deployer.deploy_model(
            config=config,
            service_type=RxVisionBentoMLLocalService.SERVICE_TYPE,
            replace=True,
            timeout=timeout,
        )
    finally:
        del deployer._create_new_service
