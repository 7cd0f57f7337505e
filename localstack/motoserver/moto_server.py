"""moto in server mode, patched into the AWS stand-in Tandem's local pipeline needs.

Usage: python3 moto_server.py PORT LAMBDA_PORT

- Step Functions executes state machines (moto's ASL parser).
- The parser sends Lambda Invoke to MOTO_PORT: that is LAMBDA_PORT, the stand-in's
  gateway, which runs the real function bootstraps (moto's own Lambda needs docker).
- getmoto/moto#10077: a second StartExecution deep-copies the state machine together with
  its running executions and fails to pickle their locks. Fixed upstream by giving
  StateMachine a __deepcopy__ that shares the backend; the same is done here.
- CloudFormation creates state machines where the executing backend does not see them;
  it is redirected.
- A parallel Scan (Segment/TotalSegments) of a table whose partition key is binary fails
  with a 500: moto hashes the key with str.encode, which bytes lack. It is hashed as bytes.
- CloudFormation ignores DefinitionSubstitutions: the deploy step rewrites them into
  Fn::Sub before the template reaches moto (see deploy.py).
"""
import copy
import os
import sys


def main() -> None:
    port, lambda_port = int(sys.argv[1]), sys.argv[2]
    os.environ["MOTO_PORT"] = lambda_port

    from moto.core.config import default_user_config

    default_user_config["stepfunctions"]["execute_state_machine"] = True

    from moto.stepfunctions.models import StateMachine

    def deepcopy_sharing_backend(self, memo):
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name == "backend":
                clone.__dict__[name] = value
            elif name == "executions":
                # The clone runs one execution; earlier ones hold live threads and locks.
                clone.__dict__[name] = []
            else:
                clone.__dict__[name] = copy.deepcopy(value, memo)
        return clone

    StateMachine.__deepcopy__ = deepcopy_sharing_backend

    from moto.dynamodb.models.dynamo_type import Item
    from moto.utilities.utils import md5_hash

    def is_within_segment(self, segments):
        if segments == (None, None):
            return True
        segment, total_segments = segments
        value = self.hash_key.value
        data = value if isinstance(value, bytes) else str(value).encode("utf8")
        return md5_hash(data).digest()[0] % total_segments == segment

    Item.is_within_segment = is_within_segment

    # CloudFormation creates state machines in moto's plain Step Functions backend, which
    # the API no longer reads once execution is on: point it at the executing backend.
    import moto.stepfunctions.models as sfn_models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    sfn_models.stepfunctions_backends = stepfunctions_parser_backends

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"moto listening on 127.0.0.1:{port}, Lambda invokes go to :{lambda_port}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
