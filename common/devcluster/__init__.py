"""A local cluster harness: ZooKeeper, PostgreSQL and RabbitMQ as child processes.

Used by the integration tests and by ``schedctl dev up``.
"""

from common.devcluster.cluster import LocalCluster
from common.devcluster.node import ServiceNode
from common.devcluster.process import ManagedProcess
from common.devcluster.proxy import TcpProxy
from common.devcluster.settings import ClusterSettings
from common.devcluster.statedir import new_state_dir

__all__ = ["ClusterSettings", "LocalCluster", "ManagedProcess", "ServiceNode", "TcpProxy",
           "new_state_dir"]
