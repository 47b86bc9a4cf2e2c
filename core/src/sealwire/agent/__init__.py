"""The agent and its A2A bus (ARCHITECTURE layer 9)."""

from sealwire.agent._agent import Agent, Route
from sealwire.agent._push import TOKEN_HEADER, PushPolicy, PushSender, WebhookRefusedError
from sealwire.agent._push_signatures import SIGNATURE_HEADER, verify_notification
from sealwire.agent._rpc import RpcConnection
from sealwire.agent._task_run import Handler, TaskContext, agent_message
from sealwire.agent._tasks import TaskManager

__all__ = [
    "SIGNATURE_HEADER",
    "TOKEN_HEADER",
    "Agent",
    "Handler",
    "PushPolicy",
    "PushSender",
    "Route",
    "RpcConnection",
    "TaskContext",
    "TaskManager",
    "WebhookRefusedError",
    "agent_message",
    "verify_notification",
]
