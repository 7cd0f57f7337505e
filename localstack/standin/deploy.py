"""Deploys the real template.yaml into the stand-in through CloudFormation.

Usage: python3 deploy.py --endpoint URL --stack NAME --template template.yaml \
           --code-dir DIR --pg-url URL [--param Key=Value ...]

It does what `sam build && sam deploy` does, offline: each function's bootstrap
(DIR/<LogicalId>/bootstrap) is zipped into an S3 bucket; the SAM translator (shipped with
cfn-lint) transforms the template; the state-machine definition file is inlined; moto's
CloudFormation ignores DefinitionSubstitutions, so they become the equivalent Fn::Sub.
What an AWS account already has is created first: a VPC, subnet and security group, and
the database secret. Prints the stack outputs, resources and the streamer's environment
(from its ECS task definition) as JSON.
"""
import argparse
import io
import json
import os
import time
import zipfile

import boto3
from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class OfflinePolicies:
    """Resolves AWS managed policy names to ARNs without calling IAM."""

    def load(self):
        return {}


def transform_template(path: str, bucket: str) -> dict:
    template, matches = decode(path)
    if matches:
        raise SystemExit(f"{path}: {matches}")
    base = os.path.dirname(os.path.abspath(path))
    for logical_id, resource in template["Resources"].items():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://{bucket}/functions/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            with open(os.path.join(base, props.pop("DefinitionUri"))) as f:
                props["Definition"] = json.load(f)
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    cfn = transform(json.loads(json.dumps(template)), {}, OfflinePolicies())
    for resource in cfn["Resources"].values():
        props = resource.get("Properties", {})
        subs = props.pop("DefinitionSubstitutions", None)
        if resource["Type"] == "AWS::StepFunctions::StateMachine" and subs:
            definition = props.pop("DefinitionString")
            if isinstance(definition, dict) and "Fn::Sub" in definition:
                definition = definition["Fn::Sub"]
            if isinstance(definition, dict) and "Fn::Join" in definition:
                sep, parts = definition["Fn::Join"]
                if not all(isinstance(p, str) for p in parts):
                    raise SystemExit("the state-machine definition must not use intrinsic functions")
                definition = sep.join(parts)
            props["DefinitionString"] = {"Fn::Sub": [definition, subs]}
    return cfn


BUCKET = "tandem-artifacts"


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def upload_code(endpoint: str, code_dir: str) -> None:
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for logical_id in sorted(os.listdir(code_dir)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            with open(os.path.join(code_dir, logical_id, "bootstrap"), "rb") as f:
                z.writestr(info, f.read())
        s3.put_object(Bucket=BUCKET, Key=f"functions/{logical_id}.zip", Body=buf.getvalue())


def account_prerequisites(endpoint: str, stack: str, pg_url: str) -> dict:
    ec2 = client("ec2", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{stack}-db", Description="reaches PostgreSQL", VpcId=vpc)["GroupId"]
    secret = client("secretsmanager", endpoint).create_secret(Name=f"{stack}/database", SecretString=pg_url)["ARN"]
    return {"DatabaseSecretArn": secret, "SubnetIds": subnet, "SecurityGroupIds": group}


def deploy(endpoint: str, stack: str, cfn: dict, params: dict) -> dict:
    client_ = client("cloudformation", endpoint)
    client_.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.time() + 300
    while True:
        desc = client_.describe_stacks(StackName=stack)["Stacks"][0]
        status = desc["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            break
        if "FAILED" in status or "ROLLBACK" in status or time.time() > deadline:
            events = client_.describe_stack_events(StackName=stack)["StackEvents"]
            reasons = [f'{e["LogicalResourceId"]}: {e.get("ResourceStatusReason", "")}' for e in events if "FAILED" in e["ResourceStatus"]]
            raise SystemExit(f"stack {stack} is {status}: {reasons}")
        time.sleep(1)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    resources = client_.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    task = client("ecs", endpoint).describe_task_definition(taskDefinition=outputs["StreamerTaskDefinition"])["taskDefinition"]
    env = {e["name"]: str(e["value"]) for e in task["containerDefinitions"][0].get("environment", [])}
    return {
        "Outputs": outputs,
        "Resources": {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources},
        "StreamerEnvironment": env,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--code-dir", required=True)
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--param", action="append", default=[], help="Key=Value template parameter")
    args = ap.parse_args()
    upload_code(args.endpoint, args.code_dir)
    params = account_prerequisites(args.endpoint, args.stack, args.pg_url)
    params.update(p.split("=", 1) for p in args.param)
    params.setdefault("StreamerImage", "tandem-streamer:local")
    cfn = transform_template(args.template, BUCKET)
    print(json.dumps(deploy(args.endpoint, args.stack, cfn, params)))


if __name__ == "__main__":
    main()
