package policy

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

// transformed is template.yaml after the SAM translator, as deploy.py transforms it.
func transformed(t *testing.T) map[string]any {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	dir := filepath.Dir(here)
	out, err := exec.Command("python3", filepath.Join(dir, "transform.py"), filepath.Join(dir, "..", "..", "template.yaml")).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("transform.py: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("transform.py: %v", err)
	}
	var cfn map[string]any
	if err := json.Unmarshal(out, &cfn); err != nil {
		t.Fatal(err)
	}
	return cfn
}

// awsManaged is every AWS managed policy the stack may attach, with what it grants (from
// its published document) and why it is acceptable. Any other managed policy is refused.
var awsManaged = map[string]struct {
	statements []statement
	why        string
}{
	"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
		statements: []statement{{actions: []string{"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}, resources: []string{"*"}}},
		why:        "SAM attaches it to every function role it generates: a function's own logs",
	},
	"arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole": {
		statements: []statement{{actions: []string{"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
			"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
			"ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}, resources: []string{"*"}}},
		why: "SAM attaches it to the role of a function with VpcConfig: Lambda creates and deletes the function's network interfaces",
	},
}

// starExceptions are the only actions granted on Resource "*", each with the reason.
var starExceptions = map[string]string{
	"ecr:GetAuthorizationToken":      "has no resource-level permissions (ECR's login token is account-wide)",
	"logs:CreateLogGroup":            "AWSLambdaBasicExecutionRole/AWSLambdaVPCAccessExecutionRole, which SAM attaches to its generated function roles",
	"logs:CreateLogStream":           "as logs:CreateLogGroup",
	"logs:PutLogEvents":              "as logs:CreateLogGroup",
	"ec2:CreateNetworkInterface":     "AWSLambdaVPCAccessExecutionRole: Lambda manages the network interfaces of VPC functions in the user's subnets",
	"ec2:DescribeNetworkInterfaces":  "EC2 Describe actions have no resource-level permissions",
	"ec2:DescribeSubnets":            "EC2 Describe actions have no resource-level permissions",
	"ec2:DeleteNetworkInterface":     "as ec2:CreateNetworkInterface",
	"ec2:AssignPrivateIpAddresses":   "as ec2:CreateNetworkInterface",
	"ec2:UnassignPrivateIpAddresses": "as ec2:CreateNetworkInterface",
}

type statement struct {
	where     string
	actions   []string
	resources []string // resolved symbolically: ${Param}, ${Resource}, ${Resource.Attr}
}

// resolve renders a value with its intrinsics symbolic: Ref X is ${X}, GetAtt X.A is ${X.A},
// Fn::Sub has its variables map substituted.
func resolve(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case map[string]any:
		if len(v) != 1 {
			break
		}
		if ref, ok := v["Ref"].(string); ok {
			return "${" + ref + "}", nil
		}
		if ga, ok := v["Fn::GetAtt"]; ok {
			switch ga := ga.(type) {
			case []any:
				if len(ga) == 2 {
					return fmt.Sprintf("${%v.%v}", ga[0], ga[1]), nil
				}
			case string:
				return "${" + ga + "}", nil
			}
		}
		switch sub := v["Fn::Sub"].(type) {
		case string:
			return sub, nil
		case []any:
			if len(sub) != 2 {
				break
			}
			s, ok := sub[0].(string)
			vars, ok2 := sub[1].(map[string]any)
			if !ok || !ok2 {
				break
			}
			for name, val := range vars {
				r, err := resolve(val)
				if err != nil {
					return "", err
				}
				s = strings.ReplaceAll(s, "${"+name+"}", r)
			}
			return s, nil
		}
	}
	return "", fmt.Errorf("cannot resolve %v", v)
}

func strs(v any) ([]string, error) {
	var list []any
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		list = v
	default:
		list = []any{v}
	}
	var out []string
	for _, e := range list {
		s, err := resolve(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// policyStatements lists every statement every IAM policy of the stack grants: inline
// policies of roles (SAM's policy templates already expanded by the translator),
// AWS::IAM::Policy and ManagedPolicy documents, and the attached AWS managed policies.
func policyStatements(cfn map[string]any) (stmts []statement, problems []string) {
	resources, _ := cfn["Resources"].(map[string]any)
	doc := func(where string, d any) {
		m, _ := d.(map[string]any)
		list := m["Statement"]
		if one, ok := list.(map[string]any); ok {
			list = []any{one}
		}
		l, _ := list.([]any)
		for i, s := range l {
			st, _ := s.(map[string]any)
			w := fmt.Sprintf("%s statement %d", where, i)
			if st["Effect"] != "Allow" {
				continue
			}
			if _, ok := st["NotAction"]; ok {
				problems = append(problems, w+": NotAction grants everything else")
			}
			if _, ok := st["NotResource"]; ok {
				problems = append(problems, w+": NotResource grants everything else")
			}
			actions, err := strs(st["Action"])
			if err != nil {
				problems = append(problems, w+": "+err.Error())
			}
			res, err := strs(st["Resource"])
			if err != nil {
				problems = append(problems, w+": "+err.Error())
			}
			stmts = append(stmts, statement{where: w, actions: actions, resources: res})
		}
	}
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r, _ := resources[name].(map[string]any)
		props, _ := r["Properties"].(map[string]any)
		switch r["Type"] {
		case "AWS::IAM::Role":
			pols, _ := props["Policies"].([]any)
			for _, p := range pols {
				pm, _ := p.(map[string]any)
				doc(fmt.Sprintf("%s policy %v", name, pm["PolicyName"]), pm["PolicyDocument"])
			}
			arns, err := strs(props["ManagedPolicyArns"])
			if err != nil {
				problems = append(problems, name+": "+err.Error())
			}
			for _, arn := range arns {
				arn = strings.ReplaceAll(arn, "${AWS::Partition}", "aws")
				mp, ok := awsManaged[arn]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s: managed policy %s is not one this test knows the grants of", name, arn))
					continue
				}
				for _, s := range mp.statements {
					s.where = name + " managed " + arn
					stmts = append(stmts, s)
				}
			}
			if _, ok := props["PermissionsBoundary"]; ok {
				problems = append(problems, name+": a permissions boundary this test does not read")
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			doc(name, props["PolicyDocument"])
		case "AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey":
			problems = append(problems, name+": the stack must not create IAM users, groups or keys")
		}
	}
	return stmts, problems
}

// leastPrivilege lists every grant of the transformed template beyond what Tandem needs.
func leastPrivilege(cfn map[string]any) []string {
	resources, _ := cfn["Resources"].(map[string]any)
	ofType := func(typ string) []string {
		var out []string
		for name, r := range resources {
			if rm, _ := r.(map[string]any); rm["Type"] == typ {
				out = append(out, name)
			}
		}
		return out
	}
	const arn = "arn:${AWS::Partition}:"
	const region = "${AWS::Region}:${AWS::AccountId}:"
	dynamo := []string{"${ControlTable.Arn}", arn + "dynamodb:" + region + "table/${ControlTable}", arn + "dynamodb:" + region + "table/${TablePrefix}*"}
	for _, d := range slices.Clone(dynamo) {
		dynamo = append(dynamo, d+"/index/*", d+"/stream/*")
	}
	var functions, machines, logGroups []string
	for _, f := range ofType("AWS::Lambda::Function") {
		functions = append(functions, "${"+f+".Arn}")
	}
	for _, sm := range ofType("AWS::StepFunctions::StateMachine") {
		props, _ := resources[sm].(map[string]any)["Properties"].(map[string]any)
		name, err := resolve(props["StateMachineName"])
		if err != nil || name == "" {
			name = "${" + sm + ".Name}"
		}
		machines = append(machines, arn+"states:"+region+"stateMachine:"+name, arn+"states:"+region+"execution:"+name+"/*", arn+"states:"+region+"execution:"+name+":*")
	}
	for _, lg := range ofType("AWS::Logs::LogGroup") {
		logGroups = append(logGroups, arn+"logs:"+region+"log-group:${"+lg+"}:*", "${"+lg+".Arn}")
	}
	allowed := map[string][]string{
		"dynamodb":       dynamo,
		"secretsmanager": {"${DatabaseSecretArn}"},
		"lambda":         functions,
		"states":         machines,
		"logs":           logGroups,
		// IAM database authentication (DatabaseIAMAuth): the one database user.
		"rds-db": {arn + "rds-db:" + region + "dbuser:${DatabaseResourceId}/${DatabaseUser}"},
		// The image is a parameter: its repository is any of the account's in the region.
		"ecr": {arn + "ecr:" + region + "repository/*"},
	}
	stmts, problems := policyStatements(cfn)
	if len(stmts) == 0 {
		problems = append(problems, "no IAM policy statements found at all")
	}
	for _, s := range stmts {
		if len(s.resources) == 0 {
			problems = append(problems, s.where+": no Resource")
		}
		for _, a := range s.actions {
			if strings.Contains(a, "*") {
				problems = append(problems, fmt.Sprintf("%s: wildcard action %q", s.where, a))
				continue
			}
			service, _, _ := strings.Cut(a, ":")
			for _, r := range s.resources {
				if r == "*" {
					if _, ok := starExceptions[a]; !ok {
						problems = append(problems, fmt.Sprintf("%s: %s on resource *", s.where, a))
					}
					continue
				}
				if !slices.Contains(allowed[service], r) {
					problems = append(problems, fmt.Sprintf("%s: %s on %s, which is not one of the stack's own %s resources", s.where, a, r, service))
				}
			}
		}
	}
	// Who may assume the stack's roles: AWS services only.
	service := regexp.MustCompile(`^(lambda|states|ecs-tasks)\.amazonaws\.com$`)
	for _, name := range ofType("AWS::IAM::Role") {
		props, _ := resources[name].(map[string]any)["Properties"].(map[string]any)
		trust, _ := props["AssumeRolePolicyDocument"].(map[string]any)
		list, _ := trust["Statement"].([]any)
		for _, st := range list {
			p, _ := st.(map[string]any)["Principal"].(map[string]any)
			if len(p) != 1 || p["Service"] == nil {
				problems = append(problems, fmt.Sprintf("%s: trusts %v, not an AWS service", name, p))
				continue
			}
			svcs, _ := strs(p["Service"])
			for _, s := range svcs {
				if !service.MatchString(s) {
					problems = append(problems, fmt.Sprintf("%s: trusts the service %s", name, s))
				}
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// TestLeastPrivilege: no IAM policy of the deployed stack grants a wildcard action, or
// Resource "*" beyond the listed exceptions (actions without resource-level permissions,
// and what SAM's generated function roles attach); DynamoDB only on the control table and
// the TablePrefix tables; the secret only the DatabaseSecretArn parameter; Lambda invoke
// only the stack's functions; Step Functions only the stack's state machine; logs only
// the stack's log group; only AWS services may assume the roles.
func TestLeastPrivilege(t *testing.T) {
	cfn := transformed(t)
	for _, p := range leastPrivilege(cfn) {
		t.Error(p)
	}
	// What the stack needs is still granted (the test would pass on a stack granting nothing).
	stmts, _ := policyStatements(cfn)
	for _, want := range []struct{ action, resource string }{
		{"dynamodb:PutItem", "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TablePrefix}*"},
		{"dynamodb:CreateTable", "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TablePrefix}*"},
		{"dynamodb:UpdateItem", "${ControlTable.Arn}"},
		{"secretsmanager:GetSecretValue", "${DatabaseSecretArn}"},
		{"rds-db:connect", "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:${DatabaseResourceId}/${DatabaseUser}"},
		{"lambda:InvokeFunction", "${SnapshotFunction.Arn}"},
		{"states:StartExecution", "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-snapshot"},
		{"ecr:BatchGetImage", "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"},
	} {
		found := false
		for _, s := range stmts {
			found = found || slices.Contains(s.actions, want.action) && slices.Contains(s.resources, want.resource)
		}
		if !found {
			t.Errorf("no policy grants %s on %s, which Tandem needs", want.action, want.resource)
		}
	}
}

// TestLeastPrivilegeCatchesViolations plants each kind of violation into the transformed
// template and requires leastPrivilege to report it.
func TestLeastPrivilegeCatchesViolations(t *testing.T) {
	base := transformed(t)
	raw, _ := json.Marshal(base)
	plant := func(stmt map[string]any) map[string]any {
		var cfn map[string]any
		_ = json.Unmarshal(raw, &cfn)
		role := cfn["Resources"].(map[string]any)["StreamerTaskRole"].(map[string]any)["Properties"].(map[string]any)
		pol := role["Policies"].([]any)[0].(map[string]any)["PolicyDocument"].(map[string]any)
		pol["Statement"] = append(pol["Statement"].([]any), stmt)
		return cfn
	}
	sub := func(s string) map[string]any { return map[string]any{"Fn::Sub": s} }
	for _, c := range []struct {
		name string
		stmt map[string]any
		want string
	}{
		{"star action", map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*"}, `wildcard action "*"`},
		{"service star", map[string]any{"Effect": "Allow", "Action": "dynamodb:*", "Resource": map[string]any{"Fn::GetAtt": []any{"ControlTable", "Arn"}}}, `wildcard action "dynamodb:*"`},
		{"star resource", map[string]any{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}, "dynamodb:PutItem on resource *"},
		{"other table", map[string]any{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": sub("arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*")}, "table/*, which is not one of the stack's own dynamodb"},
		{"other secret", map[string]any{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*")}, "secret:*, which is not one of the stack's own secretsmanager"},
		{"other function", map[string]any{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": sub("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:other")}, "function:other, which is not one of the stack's own lambda"},
		{"other state machine", map[string]any{"Effect": "Allow", "Action": "states:StartExecution", "Resource": sub("arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:*")}, "stateMachine:*, which is not one of the stack's own states"},
		{"not action", map[string]any{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "NotAction grants everything else"},
		{"other service", map[string]any{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/key"}, "s3:GetObject on arn:aws:s3:::bucket/key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			problems := leastPrivilege(plant(c.stmt))
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Fatalf("planted %v: reported %q, want one containing %q", c.stmt, problems, c.want)
			}
		})
	}
	t.Run("unknown managed policy", func(t *testing.T) {
		var cfn map[string]any
		_ = json.Unmarshal(raw, &cfn)
		role := cfn["Resources"].(map[string]any)["StreamerTaskRole"].(map[string]any)["Properties"].(map[string]any)
		role["ManagedPolicyArns"] = []any{"arn:aws:iam::aws:policy/AdministratorAccess"}
		if problems := leastPrivilege(cfn); !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "AdministratorAccess is not one") }) {
			t.Fatalf("AdministratorAccess attached: reported %q", problems)
		}
	})
}
