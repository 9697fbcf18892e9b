-- Argo CD health of a Latchkey object: APIKey, OAuthClient, API or OAuthGrant.
-- Argo CD wants one script per kind; the four are the same script, kept identical
-- by internal/argocdhealth. It reads the conditions the way kstatus does (README,
-- "Status for GitOps tools"), so Argo CD, Flux and kubectl wait agree:
-- Stalled=True is Degraded, Reconciling=True is Progressing, Ready=True is Healthy.
-- Revoked or expired as declared in Git is Ready=True: Healthy, and says so.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t and c.status == "True" then
        return c
      end
    end
  end
  return nil
end
local function describe(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end
if obj.metadata.generation ~= nil and (obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Latchkey manager to reconcile the latest spec"
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local reconciling = condition("Reconciling")
if reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end
local ready = condition("Ready")
if ready == nil then
  local any = obj.status ~= nil and obj.status.conditions ~= nil and #obj.status.conditions > 0
  if any then
    hs.status = "Degraded"
    hs.message = "Ready is not True"
    for _, c in ipairs(obj.status.conditions) do
      if c.type == "Ready" then
        hs.message = describe(c)
      end
    end
  else
    hs.status = "Progressing"
    hs.message = "Waiting for the Latchkey manager"
  end
  return hs
end
hs.status = "Healthy"
hs.message = ready.message
if ready.reason == "Revoked" or ready.reason == "Expired" then
  hs.message = ready.reason .. " as declared. " .. (ready.message or "")
end
return hs
