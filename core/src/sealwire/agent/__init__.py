"""The agent and its A2A bus (ARCHITECTURE layer 9)."""

from sealwire.agent._agent import Agent
from sealwire.agent._rpc import RpcConnection
from sealwire.agent._tasks import Handler, TaskContext, TaskManager, agent_message

__all__ = ["Agent", "Handler", "RpcConnection", "TaskContext", "TaskManager", "agent_message"]
