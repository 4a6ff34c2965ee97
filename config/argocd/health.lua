-- Argo CD health check of an UpdatePolicy (updates.bottlerocket.aws/UpdatePolicy), read from
-- the conditions the controller writes. Install it in argocd-cm under
-- resource.customizations.health.updates.bottlerocket.aws_UpdatePolicy (see README.md).
--   Degraded     Stalled=True: the rollout halted, ended with Failed nodes, or the policy is
--                invalid or conflicts; a person must act
--   Healthy      Ready=True: every governed node runs the target
--   Suspended    Paused=True: spec.paused or spec.dryRun
--   Progressing  otherwise: the rollout is under way or waits (window, soak, budget)
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to report"
  return hs
end
if obj.metadata.generation ~= nil and (obj.status.observedGeneration or 0) < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to read the latest spec"
  return hs
end
local c = {}
for _, cond in ipairs(obj.status.conditions) do
  c[cond.type] = cond
end
if c.Stalled ~= nil and c.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = c.Stalled.message
elseif c.Ready ~= nil and c.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = c.Ready.message
elseif c.Paused ~= nil and c.Paused.status == "True" then
  hs.status = "Suspended"
  hs.message = c.Paused.message
else
  hs.status = "Progressing"
  if c.Ready ~= nil then
    hs.message = c.Ready.message
  end
end
return hs
