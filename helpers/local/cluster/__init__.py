"""The cluster parts the local stack imitates besides the controller and the agent.

The kubelet's API and its ConfigMap sync (`projection`), the ingress gateway and its authorizer, identities
and RBAC.
"""
